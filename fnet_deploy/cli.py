"""The ``fnet-deploy`` command line: one typer app, one module per command."""

from __future__ import annotations

import typer

from fnet_deploy import __version__
from fnet_deploy.commands import weights
from fnet_deploy.commands.bench import bench
from fnet_deploy.commands.calibrate import calibrate
from fnet_deploy.commands.check import check
from fnet_deploy.commands.evaluate import evaluate_command
from fnet_deploy.commands.explain import explain
from fnet_deploy.commands.export import export
from fnet_deploy.commands.fuse import fuse
from fnet_deploy.commands.stream import stream
from fnet_deploy.commands.train import train

app = typer.Typer(
    name="fnet-deploy",
    help="FNet multi-modal image fusion: fuse, train, evaluate, export, stream, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """FNet multi-modal image fusion, from training to real-time video."""


app.command()(fuse)
app.command()(stream)
app.command()(calibrate)
app.command()(train)
app.command()(explain)
app.command()(bench)
app.command("eval")(evaluate_command)
app.command()(export)
app.command()(check)
app.add_typer(weights.app, name="weights")

if __name__ == "__main__":
    app(prog_name="fnet-deploy")
