"""Loading weights never unpickles, and every file hrcam itself writes loads back."""
from __future__ import annotations

import json
import os

import pytest
import torch

from hrcam.errors import UserError


def test_hrcams_own_lightning_checkpoint_loads_as_weights(trained):
    from hrcam.api.seed import load_model

    _, run = trained
    model = load_model(run / "checkpoints" / "last.ckpt")  # item 20: the net. prefix is removed
    exported = load_model(run / "last_weights.safetensors")
    assert model.num_classes == exported.num_classes == 3
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model.net(x), exported.net(x))


def test_a_malicious_pickle_never_runs(tmp_path):
    from hrcam.weights import load_weights

    flag = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {flag}",))

    for suffix in (".pt", ".ckpt"):
        torch.save({"state_dict": {"w": Evil()}}, tmp_path / f"m{suffix}")
        with pytest.raises(UserError) as e:
            load_weights(tmp_path / f"m{suffix}")
        assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert not flag.exists()


@pytest.mark.parametrize("meta, match", [({"arch": "not json {"}, "arch"), ({"im_size": "50"}, "im_size"),
                                          ({"num_classes": "-3"}, "num_classes")])
def test_crafted_metadata_gives_one_line(tmp_path, half_file, meta, match):
    from safetensors.torch import load_file, save_file

    from hrcam.api.seed import load_model
    from hrcam.weights import read_metadata

    good = {k: v if isinstance(v, str) else json.dumps(v) for k, v in read_metadata(half_file).items()}
    path = tmp_path / "crafted.safetensors"
    save_file(load_file(str(half_file)), str(path), metadata={**good, **meta})
    with pytest.raises(UserError, match=match) as e:
        load_model(path)
    assert "\n" not in str(e.value)
