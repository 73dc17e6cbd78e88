"""``python -m fnet_deploy``: the same CLI as ``fnet-deploy``."""

from fnet_deploy.cli import app

app(prog_name="fnet-deploy")
