"""Workstation: the galaxy catalogue, the image renderer, dataset preparation and ``.pt`` I/O."""
