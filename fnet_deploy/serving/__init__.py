"""Serving FNet to other machines through Triton Inference Server (``fnet-deploy serve``).

Above :mod:`fnet_deploy.inference` (the runner served is the one a user's options name):

- :mod:`.repository`: the served model as a Triton model repository (``config.pbtxt`` with
  dynamic batching, and a Python-backend ``model.py``);
- :mod:`.python_model`: that backend's model, which runs the runner inside the server;
- :mod:`.server`: the ``tritonserver`` binary that nvidia-pytriton bundles, started on that
  repository, waited for and stopped.
"""
