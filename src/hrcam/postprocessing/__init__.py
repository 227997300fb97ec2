"""Post-processing of HR-CAM maps (DESIGN §4): low- and high-res CAMs → refined CAM.

``pipeline(img, low, high, **params)`` for one image, ``pipeline_batch(imgs, lows, highs, **params)``
for N images at once (the fast path), ``refined_maps`` for their ``merged`` maps with
non-finite inputs left out. Steps live in small modules: ``params`` (validation),
``filters``, ``focal_points``, ``region_growing``, ``merge``; ``steps`` chains them.
"""
from hrcam.postprocessing.params import DEFAULTS, PipelineParams, validate_params
from hrcam.postprocessing.refine import refined_maps
from hrcam.postprocessing.steps import STEP_KEYS, pipeline, pipeline_batch

__all__ = ["pipeline", "pipeline_batch", "refined_maps", "validate_params", "PipelineParams", "DEFAULTS", "STEP_KEYS"]
