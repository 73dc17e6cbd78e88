"""How a form of FNet is run: one runner per backend behind one interface.

Runtime-only (nothing here builds or converts a model): below :mod:`fnet_deploy.export`,
:mod:`fnet_deploy.inference`, :mod:`fnet_deploy.runtime`, :mod:`fnet_deploy.bench` and the
commands, which all import it and never each other's runners:

- :mod:`.base`: the :class:`~.base.Runner` interface (activate / infer / deactivate, named
  inputs ``ir``, ``vis`` and output ``fused``);
- :mod:`.device`: ``--device`` names, parsed once; :mod:`.cuda_math`: CUDA numeric settings
  (TF32) that change float32 results;
- :mod:`.torch_runner`, :mod:`.onnx_runner`, :mod:`.tensorrt_runner`, :mod:`.triton_runner`:
  one runner per backend; :mod:`.model_files`: checks of a model file before it is opened;
- :mod:`.fp16`: the float16 boundary and its CPU emulation;
- :mod:`.engine_info`: a TensorRT engine's sidecar; :mod:`.tensor_buffers`: device memory for
  it, held by torch tensors.

Which runner a user's options name is :mod:`fnet_deploy.inference.select`.
"""
