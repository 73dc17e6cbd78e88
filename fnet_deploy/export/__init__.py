"""Making deployable model files and checking them: the ONNX graph of the deploy form
(:mod:`.onnx_graph`) and its per-weights cache (:mod:`.onnx_cache`), FP16 and INT8 forms,
TensorRT engines, Triton model repositories, and parity against the reference."""
