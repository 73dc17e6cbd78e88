"""``python -m fnet_deploy.training [OPTIONS]``: the ``fnet-deploy train`` command as a module.

torchrun launches Python modules or scripts, not console entry points::

    torchrun --nproc_per_node 4 -m fnet_deploy.training --config configs/default.toml
"""

from __future__ import annotations

import typer

from fnet_deploy.commands.train import train

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(train)

if __name__ == "__main__":
    app()
