"""Opening the runner a user names, and fusing image files with it.

Above :mod:`fnet_deploy.backends` (the runners) and :mod:`fnet_deploy.export` (the graphs):

- :mod:`.select`: the runner for a model file, weights or a server URI, by backend, file type
  and device; for weights on a CPU the fastest exact form, :mod:`.cached_onnx_runner` (the
  ONNX deploy form, exported into the cache of :mod:`fnet_deploy.export.onnx_cache` on first
  use);
- :mod:`.images`: image files through a runner (read -> preprocess -> FNet -> postprocess),
  tiled where memory asks for it (``fuse``, ``explain``, ``eval``).
"""
