"""The built-in demo (``make demo`` = ``hrcam demo run --out results/demo``).

The seed's whole workflow on the "digits on textures" data (:mod:`hrcam.data.demo`), whose
ground truth is exact:

1. ``data``       build the demo set in ``data_dir`` unless a matching one is there;
2. ``half``       train the HalfModel (classifier + low-res CAM) → ``OUT/half/``;
3. ``full_<obj>`` train the FullModel's expansion network on the frozen HalfModel, once per
                  decoder objective (``reconstruction`` = the seed's, ``consistency``) →
                  ``OUT/full_<obj>/``;
4. ``evaluate_<obj>`` classification of the test split and, for the predicted class, the
                  low-res CAM, the high-res CAM, the refined map (post-processing pipeline) and
                  a centre-prior reference, each scored with every localization metric;
5. ``report``     ``OUT/report.md``, ``OUT/metrics.json``, ``OUT/gallery_<obj>.png`` (16 test
                  images × image / low-res / high-res / refined / ground truth) and
                  ``OUT/pipeline.png`` (the pipeline's steps on one test image).

Opt-in extras (``DemoConfig.extras``, ``hrcam demo run --extras neighbours,pretrained``), after the
stages above, each with small settings of its own (:data:`EXTRA_SETTINGS`) and its wall time
reported:

- ``extra_pretrained``: the pretrained path (:mod:`hrcam.workflows.pretrained_demo`): frozen
  EfficientNet-Lite0, linear head fitted on the digits, a short decoder run; its low-res /
  high-res / refined maps become the "Lite0 …" rows of the localization table → ``OUT/extras/pretrained.json``;
- ``extra_neighbours``: CAM, L-CAM-Fm and CASM (:mod:`hrcam.workflows.baselines_demo`) trained on a
  subset of the demo data and scored like ``hrcam compare`` → a table under "Other methods",
  ``OUT/extras/neighbours.json``.

The demo preset keeps the FC-DenseNet of DESIGN §3 (4 dense blocks down, bottleneck, transposed-
conv decoder, aux 1×1 conv, GAP + linear) and changes only its parameters: image side 64,
``init_filters`` 16, ``growth_rate`` 8, ``layers_per_block`` 2, 4000 training images, 10 HalfModel
epochs (then 3 at 4× the batch), 1 FullModel epoch per objective, augmentation off (the seed's ±180° rotations and
flips would turn 6 into 9 and mirror digits), one torch thread. ``hrcam train`` keeps
the seed's defaults. Finished stages are recorded in ``OUT/stages.json`` with a key of their
settings and reused on the next run unless ``force``.
"""
from hrcam.viz.gallery import gallery_figure
from hrcam.workflows.demo.config import DEMO_PRESET, EXTRA_SETTINGS, EXTRAS, DemoConfig
from hrcam.workflows.demo.report import METRIC_COLUMNS
from hrcam.workflows.demo.run import run_demo

__all__ = ["DemoConfig", "DEMO_PRESET", "EXTRAS", "EXTRA_SETTINGS", "METRIC_COLUMNS", "run_demo", "gallery_figure"]
