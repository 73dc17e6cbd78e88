"""Making deployable model files and checking them: parity against the reference, TensorRT
engines. (The ONNX graph itself is built in :mod:`fnet_deploy.backends.onnx_graph`, which the
ONNX cache shares.)"""
