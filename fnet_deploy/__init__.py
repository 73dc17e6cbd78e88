"""fnet-deploy: FNet multi-modal image fusion from training to real-time video."""

__version__ = "0.1.0"
