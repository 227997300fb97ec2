"""Run by tests/test_ddp.py: a few DDP training steps on CPU (gloo), each rank saving its weights.

Lightning's 'ddp' strategy re-launches this script once per extra rank.
"""
import sys
from pathlib import Path

import lightning.pytorch as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import TINY_ARCH  # noqa: E402

from hrcam.train.datamodule import FolderDataModule  # noqa: E402
from hrcam.train.modules import HalfModule  # noqa: E402
from hrcam.train.runner import fit  # noqa: E402
from hrcam.weights import save_weights  # noqa: E402


class SaveRankWeights(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, module):
        save_weights(self.out / f"rank{trainer.global_rank}.safetensors", module.net.state_dict(),
                     {"world_size": trainer.world_size, "global_step": trainer.global_step})


def main(data_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    out = Path(out)
    dm = FolderDataModule(data_dir, im_size=32, batch_size=4, augment=True)
    module = HalfModule(dm.num_classes, 3, 32, TINY_ARCH, dm.classes)
    fit(module, dm, "ddp", epochs=1, results_root=out / "results", logs_root=out / "logs", progress=False,
        accelerator="cpu", devices=2, strategy="ddp", max_steps=3, callbacks=[SaveRankWeights(out)])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
