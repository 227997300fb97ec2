"""Networks only (``torch.nn``). Nothing here imports the CLI, training, or plotting code."""
from hrcam.models.base import CAMNetwork, MapOutputs, class_maps

__all__ = ["CAMNetwork", "MapOutputs", "class_maps"]
