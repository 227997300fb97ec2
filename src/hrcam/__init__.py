"""hrcam: high-resolution class activation maps.

The public surface (imported lazily so ``import hrcam`` stays light)::

    from hrcam import HalfModel, FullModel, load_model   # the seed's model API
    from hrcam import pipeline, pipeline_batch           # post-processing (refined CAMs)
    from hrcam import read_image                         # seed-style image reading
    from hrcam import plotting                           # figures (hrcam.viz.plotting)

Where things live (data flows top to bottom; nothing imports upward, ``tests/test_layers.py``)::

    cli/ -> workflows/ -> evaluation/, train/, api/, viz/ -> explain/
         -> models/, postprocessing/, metrics/, data/ -> weights.py, errors.py, debug.py
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "HalfModel": "hrcam.api.seed",
    "FullModel": "hrcam.api.seed",
    "load_model": "hrcam.api.seed",
    "compute_cams": "hrcam.api.seed",
    "HalfNet": "hrcam.models.hrcam.nets",
    "FullNet": "hrcam.models.hrcam.nets",
    "pipeline": "hrcam.postprocessing",
    "pipeline_batch": "hrcam.postprocessing",
    "read_image": "hrcam.data.folders",
}
#: public sub-modules reachable as attributes (``from hrcam import plotting``)
_MODULES = {"plotting": "hrcam.viz.plotting"}

__all__ = sorted([*_LAZY, *_MODULES]) + ["__version__"]


def __getattr__(name: str):
    """Import a public name on first use (keeps ``import hrcam`` light)."""
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hrcam' has no attribute {name!r}")


def __dir__():
    """The public names (see the module docstring)."""
    return __all__
