"""Export: ONNX (FP32 / FP16) of the deploy form, graph checks, TensorRT engines, parity."""
