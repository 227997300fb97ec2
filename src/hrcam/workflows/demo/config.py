"""The demo's settings: :class:`DemoConfig` (the preset) and the opt-in extras with their small settings."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: FullModel epochs per decoder objective. ``faithfulness``: 2 keeps ``make demo`` under 10 minutes
#: on 2 cores; a third epoch adds about 60 s and lifts the guided-filtered map's PxAP by ~0.03
#: (README, "Decoder ablation"). The seed's autoencoder maps get worse with training.
FULL_EPOCHS = {"faithfulness": 2, "smoothness": 3, "reconstruction": 1, "consistency": 1}
#: the distractor variant's, where they differ: its decoder keeps improving with training (measured,
#: guided-filtered high-res PxAP 0.561 after 2 epochs, 0.604 after 4), and that opt-in run is not
#: held to make demo's 10 minutes
DISTRACTOR_FULL_EPOCHS = {"faithfulness": 4}

#: the baselines' training settings (keyword arguments of hrcam.workflows.baselines_demo.train_neighbours,
#: which documents them)
BASELINE_SETTINGS = {
    "backbone": "efficientnet_lite0", "pretrained": True, "im_size": 96, "batch_size": 32,
    # CAM's rate decays to 0 (cosine): at a constant rate the last-epoch accuracy swung from 0.79 to
    # 0.88 with nothing but float rounding changed (channels-last); measured in the README, "Baselines"
    "epochs": 3, "cam_lr": 1e-3, "cam_lr_schedule": "cosine", "extra_channels": 64,
    "lcam_epochs": 1, "lcam_lr": 1e-3, "lcam_optimizer": "adam",
    # CASM: 2 passes over the 2000 images (126 steps); after 30 its masks did not beat the centre prior
    "thinnings": ("F", "L"), "casm_epochs": 2, "casm_batches": 63, "casm_warmup_epochs": 0, "casm_lr": 1e-3,
    # CASM's masked-out pixels: one random colour per image, not the paper's black (a black fill cannot
    # hide a dark digit); measured over 4 seeds, mean CASM PxAP F 0.194 -> 0.233, L 0.248 -> 0.285
    "lambda_ramp_steps": 0, "casm_fill": "random",
}

#: the demo's FC-DenseNet (DESIGN §3, narrower): the plain digits need no more (test accuracy ~0.92)
DEMO_ARCH = {"init_filters": 16, "growth_rate": 8, "layers_per_block": 2}
#: the distractor variant's, twice the growth rate and one more layer per block: telling a whole
#: digit from same-coloured fragments of others needs more capacity. Measured on the distractor set
#: (2 fragments, seed 0, 10 + 3 HalfModel epochs): test accuracy 0.606 with DEMO_ARCH, 0.704 with
#: growth 16, 0.706 with 3 layers, 0.842 with both; HalfModel training ~1.7x as long.
DISTRACTOR_ARCH = {"init_filters": 16, "growth_rate": 16, "layers_per_block": 3}

#: what the headline table's maps explain: each image's predicted class, or its true class
MAP_CLASSES = ("predicted", "true")

#: opt-in extra stages of the demo
EXTRAS = ("neighbours", "pretrained")
#: other accepted names of the extras (the baselines CAM / L-CAM / CASM were called "neighbours")
EXTRA_ALIASES = {"baselines": "neighbours"}

#: their small settings, together under the issue's 8 minutes on 2 cores (measured idle, 1 thread per
#: process, two processes: the whole command 7 min 22 s; pretrained 269 s = linear head 57 s + decoder
#: 32 s + scoring 500 test images 180 s, beside neighbours 427 s = CAM 113 s, CASM L 154 s, CASM F 62 s,
#: L-CAM 40 s, scoring 65 s, split over the two); the report gives each run's own times
EXTRA_SETTINGS = {
    # CAM / L-CAM / CASM: keyword arguments of train_neighbours plus the image subset
    # (``train``/``test`` images spread over the splits) and the scoring batch
    "neighbours": {**BASELINE_SETTINGS, "train": 2000, "test": 100, "score_batch": 50},
    # keyword arguments of fit_pretrained_digits, plus ``test_limit`` (None = the demo's ``limit``)
    "pretrained": {"backbone": "efficientnet_lite0", "im_size": 224, "head_epochs": 100, "decoder_steps": 100,
                   "train_size": 128, "decoder_batch": 8, "objective": "consistency", "train_limit": 2000,
                   "test_limit": None},
}

@dataclass
class DemoConfig:
    """Settings of the demo run (defaults: the ``make demo`` preset)."""

    size: int = 64
    train: int = 4000
    test: int = 500
    seed: int = 0
    # same-coloured fragments of other digits beside each target (hrcam data demo --distractors):
    # a harder check that a map follows class evidence, not the digit's colour
    distractors: int = 0
    # FC-DenseNet settings (hrcam.models.hrcam.FCDenseNetConfig keys); None = the preset for the data:
    # DEMO_ARCH, or DISTRACTOR_ARCH with distractors (see :attr:`net_arch`)
    arch: dict | None = None
    batch_size: int = 16
    half_epochs: int = 10
    # then a few epochs with 4× the batch (less gradient noise; settles the last-epoch weights,
    # which otherwise swing by ±3 % test accuracy from epoch to epoch). 0 = skip.
    half_settle_epochs: int = 3
    settle_batch_factor: int = 4
    # FullModel epochs: None = per objective (:data:`FULL_EPOCHS`), an int = the same for all
    full_epochs: int | None = None
    # the first is the primary objective (the headline rows); 'faithfulness' trains with the
    # 'localize' recipe, the others with the seed's
    objectives: tuple[str, ...] = ("faithfulness", "reconstruction")
    consistency_weight: float = 1.0
    augment: bool = False
    limit: int | None = None  # test images scored for localization (None = all)
    # which class the headline table's maps explain: each image's prediction, or its true class
    # (the protocol of Choe et al., CVPR 2020, whose PxAP and MaxBoxAccV2 the table reports)
    map_class: str = "predicted"
    gallery: int = 16
    # ``hrcam compare`` on the primary FullModel: methods and number of test images (0 = skip)
    compare_methods: tuple[str, ...] = ("cam", "hrcam", "refined", "gradcam", "gradcampp")
    compare_limit: int = 100
    # torch threads: one thread avoids the large slow-down of OpenMP threads competing for cores
    # on a busy machine (measured: several times faster here); None leaves torch's setting.
    threads: int | None = 1
    # opt-in extra rows (see the module docstring): names from EXTRAS, and overrides of EXTRA_SETTINGS
    extras: tuple[str, ...] = ()
    neighbours_settings: dict = field(default_factory=dict)
    pretrained_settings: dict = field(default_factory=dict)
    # train the extras in two processes where a second core is free (same runs, same seeds)
    parallel_extras: bool = True

    def __post_init__(self):
        from hrcam.train.modules import OBJECTIVES

        if not self.objectives:
            raise ValueError("objectives must name at least one decoder objective")
        for obj in self.objectives:
            if obj not in OBJECTIVES:
                raise ValueError(f"objectives: {obj!r} is not one of {', '.join(OBJECTIVES)}")
        if not isinstance(self.distractors, int) or self.distractors < 0:
            raise ValueError(f"distractors must be an integer >= 0, got {self.distractors!r}")
        if self.arch is not None:
            from hrcam.models.hrcam.fcdensenet import FCDenseNetConfig

            known = {f.name for f in dataclasses.fields(FCDenseNetConfig)} - {"in_channels"}
            unknown = sorted(set(self.arch) - known)
            if unknown:
                raise ValueError(f"arch: unknown keys {unknown}; known: {', '.join(sorted(known))}")
            FCDenseNetConfig(**self.arch)  # positive integers, or ValueError
        if self.map_class not in MAP_CLASSES:
            raise ValueError(f"map_class: expected one of {', '.join(MAP_CLASSES)}, got {self.map_class!r}")
        if self.full_epochs is not None and int(self.full_epochs) < 1:
            raise ValueError(f"full_epochs must be >= 1, got {self.full_epochs}")
        for name in ("half_epochs", "batch_size", "size", "train", "test",
                     "settle_batch_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.objectives = tuple(self.objectives)
        self.compare_methods = tuple(self.compare_methods)
        self.extras = tuple(EXTRA_ALIASES.get(e, e) for e in self.extras)
        for name in self.extras:
            if name not in EXTRAS:
                raise ValueError(f"extras: {name!r} is not one of {', '.join(EXTRAS)}")
        for extra in EXTRAS:
            unknown = set(getattr(self, f"{extra}_settings")) - set(EXTRA_SETTINGS[extra])
            if unknown:
                raise ValueError(f"{extra}_settings: unknown keys {sorted(unknown)}; "
                                 f"known: {', '.join(EXTRA_SETTINGS[extra])}")

    @property
    def net_arch(self) -> dict:
        """The FC-DenseNet settings trained: ``arch``, or the preset for the data when it is None."""
        if self.arch is not None:
            return dict(self.arch)
        return dict(DISTRACTOR_ARCH if self.distractors else DEMO_ARCH)

    def epochs_of(self, objective: str) -> int:
        """FullModel epochs for ``objective``."""
        if self.full_epochs is not None:
            return int(self.full_epochs)
        if self.distractors and objective in DISTRACTOR_FULL_EPOCHS:
            return DISTRACTOR_FULL_EPOCHS[objective]
        return FULL_EPOCHS.get(objective, 1)

    def recipe_of(self, objective: str) -> dict:
        """The decoder recipe (:func:`hrcam.train.recipes.decoder_recipe`) the demo trains ``objective`` with."""
        from hrcam.train.recipes import decoder_recipe

        preset = "localize" if objective in ("faithfulness", "smoothness") else "seed"
        return decoder_recipe(preset, objective=objective)

    def extra_settings(self, extra: str) -> dict:
        """EXTRA_SETTINGS[extra] with this config's overrides."""
        return {**EXTRA_SETTINGS[extra], **getattr(self, f"{extra}_settings")}

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "arch": self.net_arch, "objectives": list(self.objectives),
                "compare_methods": list(self.compare_methods), "extras": list(self.extras)}

DEMO_PRESET = DemoConfig()
