"""``--devices N``: batches sharded over CPU processes (gloo), scores merged once, the table of one
process; and the exact, mergeable set-level accumulators behind it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrcam.errors import UserError
from hrcam.evaluation.sharding import (
    ExactIoUAccumulator,
    MergeableSetAccumulator,
    batch_ranges,
    rank_positions,
    run_sharded,
    shard,
)
from hrcam.metrics.localization import BestIoUAccumulator, SetLocalizationAccumulator


@pytest.mark.parametrize("n,size,world", [(10, 4, 2), (12, 4, 2), (7, 3, 3), (5, 8, 2), (9, 2, 4)])
def test_every_image_in_exactly_one_rank_in_its_batch(n, size, world):
    ranges = batch_ranges(n, size)
    seen = []
    for r in range(world):
        mine = shard(len(ranges), r, world)
        pos = rank_positions(n, size, mine)
        # cut into batch_size pieces again, a rank's positions are exactly its batches
        assert [pos[i : i + size] for i in range(0, len(pos), size)] == [list(ranges[b]) for b in mine]
        seen += pos
    assert sorted(seen) == list(range(n))


def _maps_and_masks(seed: int, n: int = 6, size: int = 12):
    rng = np.random.default_rng(seed)
    maps = rng.random((n, size // 2, size // 2))
    masks = [rng.random((size, size)) > 0.6 for _ in range(n)]
    masks[1] = None  # an image without a mask
    masks[2][:] = False  # an empty mask: does not count
    boxes = [[[1, 2, 9, 10]], [], [[0, 0, 4, 4]], [[3, 3, 12, 12]], [[2, 1, 5, 7]], [[0, 0, 12, 12]]][:n]
    return maps, masks, boxes


def test_exact_iou_is_best_iou_and_merges_exactly():
    maps, masks, _ = _maps_and_masks(0)
    plain, exact = BestIoUAccumulator(), ExactIoUAccumulator()
    plain.update(maps, masks)
    exact.update(maps, masks)
    assert exact.count == plain.count == 4
    np.testing.assert_allclose(exact.curve(), plain.curve(), rtol=1e-14, atol=0)
    assert exact.result().threshold == plain.result().threshold
    # any split, in any order, gives the same integers, hence the same float result
    parts = [ExactIoUAccumulator() for _ in range(3)]
    for k, i in enumerate([4, 0, 5, 2, 1, 3]):
        parts[k % 3].update(maps[i : i + 1], [masks[i]])
    merged = ExactIoUAccumulator()
    for p in (parts[2], parts[0], parts[1]):
        merged.merge(p)
    assert merged.total == exact.total and merged.count == exact.count
    assert np.array_equal(merged.curve(), exact.curve()) and merged.result() == exact.result()


def test_mergeable_set_accumulator_merges_exactly():
    maps, masks, boxes = _maps_and_masks(1)
    whole = MergeableSetAccumulator()
    whole.update(maps, masks, boxes, size=(12, 12))
    reference = SetLocalizationAccumulator()
    reference.update(maps, masks, boxes, size=(12, 12))
    for key, v in reference.result().items():  # the metrics module's numbers (float rounding aside)
        assert whole.result()[key] == pytest.approx(v, rel=1e-12, abs=1e-15, nan_ok=True), key
    a, b = MergeableSetAccumulator(), MergeableSetAccumulator()
    a.update(maps[3:], masks[3:], boxes[3:], size=(12, 12))
    b.update(maps[:3], masks[:3], boxes[:3], size=(12, 12))
    a.merge(b)
    assert a.result() == whole.result()
    with pytest.raises(ValueError, match="different settings"):
        a.merge(MergeableSetAccumulator(bins=10))


def _rank_task(common, part, rank):  # run in the spawned ranks (imported from this module)
    if part == "fail":
        raise UserError(f"rank {rank} found nothing to read")
    return (rank, common + part, torch.get_num_threads())


def test_run_sharded_gathers_in_rank_order_and_raises_a_rank_user_error():
    assert run_sharded(_rank_task, 10, [1]) == [(0, 11, torch.get_num_threads())]  # one part: in process
    with pytest.raises(UserError, match="rank 1 found nothing to read"):
        run_sharded(_rank_task, 10, [1, "fail"], threads=1)


# -- the commands with --devices 2 against --devices 1, end to end ------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from hrcam.api.seed import FullModel
    from hrcam.data.demo import build_demo_dataset
    from hrcam.models.hrcam.nets import FullNet

    root = tmp_path_factory.mktemp("shards")
    data = build_demo_dataset(root / "data", size=32, train=10, test=11, progress=False)
    # an annotated test image that fails to decode (its header still reads): skipped and counted
    bad = sorted((data / "test").rglob("*.png"))[4]
    bad.write_bytes(bad.read_bytes()[:120])
    torch.manual_seed(0)
    net = FullNet(num_classes=10, init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4)
    weights = root / "full" / "best_weights.safetensors"
    FullModel.from_network(net, im_size=32).save(weights)
    return data, weights, root, bad


def _cli(*argv) -> None:
    from hrcam.cli import main

    assert main([*map(str, argv), "--no_progress"]) == 0


def test_devices_2_gives_the_table_of_one_process(setup):
    data, weights, root, bad = setup
    out = {}
    for d in (1, 2):  # 10 readable images in batches of 3: ranks get batches 0, 2 and 1, 3
        o = root / f"d{d}"
        _cli("evaluate", "--data_dir", data, "--weights", weights, "--batch_size", "3", "--devices", d,
             "--out", o / "eval.json")
        _cli("evaluate", "localization", "--data_dir", data, "--weights", weights, "--batch_size", "3",
             "--devices", d, "--out", o)
        _cli("compare", "--data_dir", data, "--weights", weights, "--methods", "cam,hrcam", "--batch_size", "3",
             "--devices", d, "--gallery", "4", "--out", o / "cmp")
        out[d] = {"eval": json.loads((o / "eval.json").read_text()),
                  "loc": json.loads((o / "localization.json").read_text()),
                  "md": (o / "localization.md").read_text(),
                  "cmp": json.loads((o / "cmp" / "compare.json").read_text()),
                  "html": (o / "cmp" / "report.html").read_text()}
    one, two = out[1], out[2]
    assert one["eval"] == two["eval"]
    assert one["eval"]["decode_failures"] == 1 and one["eval"]["failed_files"] == [str(bad)]
    assert one["eval"]["num_samples"] == 10
    assert one["loc"] == two["loc"] and one["md"] == two["md"]
    assert one["loc"]["count"] == 10 and one["loc"]["decode_failures"] == 1
    assert one["cmp"]["meta"] == two["cmp"]["meta"] and one["cmp"]["meta"]["skipped_files"] == 1
    for r1, r2 in zip(one["cmp"]["rows"], two["cmp"]["rows"], strict=True):
        r1.pop("ms_per_image"), r2.pop("ms_per_image")
        assert r1 == r2
    assert one["cmp"]["rows"][1]["method"] == "hrcam" and one["cmp"]["rows"][1]["images"] == 10
    # report.html: the same gallery (maps of the same first images); only the table rows, which
    # hold ms_per_image, may differ
    def strip(html):
        return [line for line in html.splitlines() if not line.startswith(("<tr><td>cam<", "<tr><td>hrcam<"))]

    assert strip(one["html"]) == strip(two["html"]) and sum("data:image/png" in x for x in strip(one["html"])) >= 4


def test_devices_errors_are_one_line(setup, capsys):
    from hrcam.cli import main

    data, weights, root, _ = setup
    for argv, message in ((["evaluate", "--devices", "0"], "positive integer"),
                          (["evaluate", "localization", "--num_workers", "-1"], "integer >= 0"),
                          (["compare", "--devices", "two"], "positive integer")):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--data_dir", str(data), "--weights", str(weights)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        return
    assert main(["compare", "--data_dir", str(data), "--weights", str(weights), "--devices", "2",
                 "--device", "cuda", "--out", str(root / "x")]) == 2
    err = capsys.readouterr().err
    assert "CPU processes" in err and len(err.strip().splitlines()) == 1
