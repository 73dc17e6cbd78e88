"""One module per ``fnet-deploy`` command; :mod:`fnet_deploy.cli` assembles them."""
