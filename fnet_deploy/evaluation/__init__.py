"""Evaluating fusion methods on paired folders (``fnet-deploy eval``): the plan built from the
options (:mod:`~fnet_deploy.evaluation.plan`) and the run that fuses and scores
(:mod:`~fnet_deploy.evaluation.run`)."""
