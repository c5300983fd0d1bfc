"""napari-cellsynth: generative data augmentation for rare classes in microscopy."""

__version__ = "0.1.0"
