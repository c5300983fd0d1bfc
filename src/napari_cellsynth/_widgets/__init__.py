"""Dock widgets: thin magicgui containers over the functions in ``napari_cellsynth.core``."""
