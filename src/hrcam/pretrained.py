"""Compatibility path (README before 0.2): use :mod:`hrcam.api.pretrained`."""
from hrcam.api.pretrained import *  # noqa: F403
from hrcam.api.pretrained import __all__  # noqa: F401
