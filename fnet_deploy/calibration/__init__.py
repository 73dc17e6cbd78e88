"""Offline calibration of a camera pair: the IR-to-visible map estimated from images or points
(:mod:`.estimate`), written for ``stream --registration`` (the map itself and its use per
frame are :mod:`fnet_deploy.runtime.registration`)."""
