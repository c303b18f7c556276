"""The pcm-AstroMAE network (``astromae``) and its checkpoint loaders (``checkpoint``).

Submodules import torch; import them explicitly (``from cosmic_utils.model.astromae import
build_model``) so that importing this package stays cheap and torch-free.
"""
