"""hrcam: high-resolution class activation maps.

The public surface (imported lazily so ``import hrcam`` stays light)::

    from hrcam import HalfModel, FullModel, load_model   # the seed's model API
    from hrcam import pipeline, pipeline_batch           # post-processing (refined CAMs)
    from hrcam import read_image                         # seed-style image reading
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "HalfModel": "hrcam.cams",
    "FullModel": "hrcam.cams",
    "load_model": "hrcam.cams",
    "compute_cams": "hrcam.cams",
    "HalfNet": "hrcam.models.hrcam_nets",
    "FullNet": "hrcam.models.hrcam_nets",
    "pipeline": "hrcam.postprocessing",
    "pipeline_batch": "hrcam.postprocessing",
    "read_image": "hrcam.data.folders",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hrcam' has no attribute {name!r}")


def __dir__():
    return __all__
