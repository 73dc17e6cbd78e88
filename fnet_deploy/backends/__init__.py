"""How a form of FNet is run: one runner per backend behind one interface, and how one is chosen.

Below :mod:`fnet_deploy.export`, :mod:`fnet_deploy.runtime`, :mod:`fnet_deploy.bench` and the
commands, which all import it and never each other's runners:

- :mod:`.base`: the :class:`~.base.Runner` interface (activate / infer / deactivate, named
  inputs ``ir``, ``vis`` and output ``fused``);
- :mod:`.device`: ``--device`` names, parsed once;
- :mod:`.torch_runner`, :mod:`.onnx_runner`, :mod:`.tensorrt_runner`: one runner per backend;
- :mod:`.onnx_graph`: the ONNX graph of the deploy form (what ``export`` writes and the cache
  holds), :mod:`.onnx_cache` and :mod:`.cached_onnx_runner`: that graph exported once per
  weights file; :mod:`.fp16`: the float16 boundary and its CPU emulation;
- :mod:`.engine_info`: a TensorRT engine's sidecar; :mod:`.tensor_buffers`: device memory for
  it, held by torch tensors;
- :mod:`.select`: the runner for a model file or weights, by backend, file type and device.
"""
