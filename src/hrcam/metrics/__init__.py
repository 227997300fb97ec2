"""Metrics: classification (:mod:`.classification`), localization and faithfulness of maps.

Import the sub-module you need (``from hrcam.metrics.classification import
classification_metrics``); this package imports nothing heavy by itself. The classification
functions are also reachable here, loaded on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "classification_metrics": "hrcam.metrics.classification",
    "format_classification_report": "hrcam.metrics.classification",
    "ClassificationAccumulator": "hrcam.metrics.classification",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hrcam.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
