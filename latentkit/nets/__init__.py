"""Clean-room PyTorch generators. Nothing here knows how checkpoints are stored (see ``latentkit.load``)."""

from latentkit.nets.generator import Generator, MappingActivation

__all__ = ["Generator", "MappingActivation"]
