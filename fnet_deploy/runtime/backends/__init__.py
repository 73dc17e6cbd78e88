"""Inference backends behind one runner interface (see :mod:`.base`)."""
