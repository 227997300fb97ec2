"""Parameters of the post-processing pipeline (DESIGN §4): defaults and validation.

Every parameter of the seed's ``postprocessing.pipeline`` is here with the seed's default. A bad
value raises ``ValueError`` naming the parameter and what it accepts.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

__all__ = ["PipelineParams", "DEFAULTS", "validate_params"]


@dataclass(frozen=True)
class PipelineParams:
    """Validated pipeline parameters (see :func:`validate_params` for the accepted values)."""

    roi_percentile: float = 85
    focal_scope: str = "global"
    maxima_areas: str = "small"
    merge_type: str = "blend"
    merge_alpha: float = 0.5
    filter_type: str = "percentage"
    filter_percentage: float = 15
    filter_threshold: float = 0.6
    #: ``'fixed'``: the seed's pixel constants (5×5 blur, holes up to 256 px), made for 224 px;
    #: ``'image'``: scaled with the image side (blur ≈ 5·S/224, odd, ≥ 3; holes 256·(S/224)²)
    pixel_scale: str = "fixed"

    def as_dict(self) -> dict:
        return asdict(self)

    def pixel_constants(self, height: int, width: int) -> tuple[int, int]:
        """``(box blur size, largest hole filled in px)`` for an H×W image."""
        if self.pixel_scale == "fixed":
            return 5, 256
        side = (height * width) ** 0.5
        blur = max(3, int(round(5 * side / 224)) | 1)
        return blur, max(1, int(round(256 * height * width / 224**2)))


DEFAULTS = PipelineParams()

_CHOICES = {
    "focal_scope": ("global", "local"),
    "maxima_areas": ("small", "large"),
    "merge_type": ("blend", "multiply"),
    "filter_type": ("percentage", "threshold"),
    "pixel_scale": ("fixed", "image"),
}
# name -> (low, high, low_inclusive, high_inclusive)
_RANGES = {
    "roi_percentile": (0.0, 100.0, False, False),
    "merge_alpha": (0.0, 1.0, True, True),
    "filter_percentage": (0.0, 100.0, False, False),
    "filter_threshold": (0.0, 1.0, True, True),
}


def _interval(lo: float, hi: float, lo_in: bool, hi_in: bool) -> str:
    return f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def _check_number(name: str, value) -> float:
    lo, hi, lo_in, hi_in = _RANGES[name]
    accepted = f"{name} must be a number in {_interval(lo, hi, lo_in, hi_in)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{accepted}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
    if not ok:
        raise ValueError(f"{accepted}, got {value!r}")
    return v


def _check_choice(name: str, value) -> str:
    choices = _CHOICES[name]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def validate_params(**params) -> PipelineParams:
    """Check every pipeline parameter and return them as a :class:`PipelineParams`.

    Accepted values (defaults in brackets):

    - ``roi_percentile`` in (0, 100) [85]: the ROI is the low-res map above this percentile;
    - ``focal_scope`` in {'global', 'local'} ['global'];
    - ``maxima_areas`` in {'small', 'large'} ['small'] (only used by the 'local' scope);
    - ``merge_type`` in {'blend', 'multiply'} ['blend'];
    - ``merge_alpha`` in [0, 1] [0.5] (weight of the segmentation in 'blend');
    - ``filter_type`` in {'percentage', 'threshold'} ['percentage'];
    - ``filter_percentage`` in (0, 100) [15] (share of pixels kept, in percent);
    - ``filter_threshold`` in [0, 1] [0.6];
    - ``pixel_scale`` in {'fixed', 'image'} ['fixed']: the seed's pixel constants, or scaled
      with the image size (see :meth:`PipelineParams.pixel_constants`).

    Unknown names raise ``ValueError`` listing the known ones.
    """
    known = DEFAULTS.as_dict()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"unknown pipeline parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values = {**known, **params}
    checked = {}
    for name, value in values.items():
        checked[name] = _check_choice(name, value) if name in _CHOICES else _check_number(name, value)
    return PipelineParams(**checked)
