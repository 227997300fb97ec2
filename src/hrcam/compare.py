"""Compatibility path (README before 0.2): use :mod:`hrcam.evaluation.compare`."""
from hrcam.evaluation.compare import *  # noqa: F403
from hrcam.evaluation.compare import __all__  # noqa: F401
