"""Training speed options keep the math: channels-last, bf16-mixed on CPU, the CLI switches."""
import copy

import pytest
import torch
import torch.nn.functional as F
from tests.helpers import TINY_ARCH, make_colour_dataset

from hrcam.cli import build_parser
from hrcam.cli.train import _settings
from hrcam.train.datamodule import FolderDataModule
from hrcam.train.modules import HalfModule, l2_penalty
from hrcam.train.runner import fit
from hrcam.weights import load_weights


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("data"), per_class=(4, 2))


def _train(data, root, name, channels_last, precision=None):
    torch.manual_seed(0)
    dm = FolderDataModule(data, im_size=32, batch_size=6, augment=False)
    module = HalfModule(dm.num_classes, 3, 32, TINY_ARCH, dm.classes)
    module.channels_last = channels_last
    seen = []
    step = module.training_step

    def spy(batch, batch_idx):
        seen.append(batch[0].is_contiguous(memory_format=torch.channels_last))
        return step(batch, batch_idx)

    module.training_step = spy
    out = fit(module, dm, name, epochs=1, results_root=root / "results", logs_root=root / "logs",
              progress=False, accelerator="cpu", devices=1, precision=precision)
    return load_weights(out["last"])[0], seen


def test_channels_last_step_has_the_same_loss_and_gradients():
    """Against a float64 reference, the channels-last step is as accurate as the NCHW one."""
    torch.manual_seed(0)
    nchw = HalfModule(3, 3, 32, TINY_ARCH).net.train()
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    ref = copy.deepcopy(nchw).double()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    losses = []
    for net, inp in ((nchw, x), (cl, x.contiguous(memory_format=torch.channels_last)), (ref, x.double())):
        loss = F.cross_entropy(net(inp), y) + 1e-4 * l2_penalty(net)
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[2], rel=1e-4)
    # the whole gradient, as one vector: float32 rounding only (a wrong term would be O(1))
    flat = [torch.cat([p.grad.double().reshape(-1) for p in net.parameters()]) for net in (nchw, cl, ref)]
    for got in flat[:2]:
        assert (got - flat[2]).norm() <= 1e-3 * flat[2].norm()


def test_fit_trains_in_channels_last_and_in_bf16_mixed(data, tmp_path):
    torch.manual_seed(0)
    init = HalfModule(3, 3, 32, TINY_ARCH).net.state_dict()  # what every run starts from
    _, seen_nchw = _train(data, tmp_path, "nchw", False)
    assert seen_nchw and not any(seen_nchw)
    for name, precision in (("cl", None), ("bf16", "bf16-mixed")):
        state, seen = _train(data, tmp_path, name, True, precision)
        assert seen and all(seen), name  # the batches reached the step in channels-last format
        assert all(v.is_contiguous() and torch.isfinite(v.float()).all() for v in state.values())
        moved = sum(not torch.equal(state[k], init[k]) for k in init if init[k].is_floating_point())
        assert moved > len(init) // 2, name  # it trained


def test_cli_speed_flags_reach_the_run_settings():
    p = build_parser()
    base = ["train", "half", "--data_dir", "d", "--results_name", "r"]
    _, run = _settings(p.parse_args(base))
    assert run.channels_last is True and run.compile is False
    _, run = _settings(p.parse_args([*base, "--no-channels-last", "--compile"]))
    assert run.channels_last is False and run.compile is True
    _, run = _settings(p.parse_args(["train", "full", "--data_dir", "d", "--results_name", "r",
                                     "--half_weight_dir", "h", "--no_channels_last"]))
    assert run.channels_last is False


def test_compiled_fit_hands_the_compiler_the_concatenating_blocks():
    """Under --compile the blocks concatenate (the compiler recomputes on its own); eager keeps the
    memory-efficient ones. ``nn.Module.compile`` only marks the module, so nothing compiles here."""
    from hrcam.models.hrcam.fcdensenet import DenseBlock, TransitionDown

    def flags(module):
        return {m.memory_efficient for m in module.net.modules() if isinstance(m, (DenseBlock, TransitionDown))}

    eager, compiled = HalfModule(3, 3, 32, TINY_ARCH), HalfModule(3, 3, 32, TINY_ARCH)
    compiled.compile_net = True
    for m in (eager, compiled):
        m.on_fit_start()
    assert flags(eager) == {"auto"} and flags(compiled) == {False}
    assert compiled.net._compiled_call_impl is not None and eager.net._compiled_call_impl is None


def test_baseline_modules_train_in_channels_last_and_leave_the_net_as_it_was(data, tmp_path):
    """CAM / L-CAM / CASM modules share the hooks (hrcam.train.memory_format): channels-last batches
    reach the step, and after fit the network is back in the default layout; off, nothing changes."""
    from hrcam.cli import build_parser
    from hrcam.cli.train_baselines import _settings as baseline_settings
    from hrcam.models.baselines.camnet import CAMNet
    from hrcam.train.baselines import CAMModule

    for channels_last in (True, False):
        torch.manual_seed(0)
        dm = FolderDataModule(data, im_size=32, batch_size=6, augment=False)
        module = CAMModule(CAMNet.build("resnet18", dm.num_classes, extra_channels=8), im_size=32,
                           class_names=dm.classes)
        module.channels_last = channels_last
        seen, step = [], module.training_step
        module.training_step = lambda batch, batch_idx: (seen.append(
            batch[0].is_contiguous(memory_format=torch.channels_last)), step(batch, batch_idx))[1]
        fit(module, dm, f"cam{channels_last}", epochs=1, results_root=tmp_path / "results",
            logs_root=tmp_path / "logs", progress=False, accelerator="cpu", devices=1)
        assert seen and all(s == channels_last for s in seen)
        assert all(p.is_contiguous() for p in module.net.parameters())
    p = build_parser()
    base = ["train", "casm", "--data_dir", "d", "--results_name", "r"]
    assert baseline_settings(p.parse_args(base))[1].channels_last is True
    assert baseline_settings(p.parse_args([*base, "--no_channels_last"]))[1].channels_last is False
