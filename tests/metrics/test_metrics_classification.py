"""Classification metrics: hand-computed answers on small cases, scikit-learn on a random one."""
import json
import warnings

import numpy as np
import pytest
import torch

from hrcam.metrics.classification import (
    ClassificationAccumulator,
    classification_metrics,
    format_classification_report,
)

# 3 classes, 6 samples. argmax predictions: [0, 1, 1, 1, 2, 0]
TARGETS = [0, 0, 1, 1, 2, 2]
LOGITS = [
    [2.0, 1.0, 0.0],
    [1.0, 3.0, 0.0],
    [0.0, 5.0, 1.0],
    [1.0, 2.0, 0.0],
    [0.0, 1.0, 4.0],
    [3.0, 1.0, 2.0],
]


def test_hand_computed_three_classes():
    m = classification_metrics(TARGETS, LOGITS, 3, class_names=["cat", "dog", "fox"])
    # confusion (rows true): class 0 -> {0, 1}; class 1 -> {1, 1}; class 2 -> {2, 0}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top_k"] == 3 and m["top5"] == pytest.approx(1.0)
    # TP = [1, 2, 1], predicted = [2, 3, 1], support = [2, 2, 2]
    prec = [1 / 2, 2 / 3, 1.0]
    rec = [1 / 2, 1.0, 1 / 2]
    f1 = [2 * 1 / (2 + 2), 2 * 2 / (2 + 3), 2 * 1 / (2 + 1)]
    for row, p, r, f in zip(m["per_class"], prec, rec, f1):
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f)
        assert row["support"] == 2
    assert [row["name"] for row in m["per_class"]] == ["cat", "dog", "fox"]
    assert m["macro"]["precision"] == pytest.approx(13 / 18)
    assert m["macro"]["recall"] == pytest.approx(2 / 3)
    assert m["macro"]["f1"] == pytest.approx(59 / 90)
    for key in ("precision", "recall", "f1"):
        assert m["micro"][key] == pytest.approx(4 / 6)  # = accuracy for single-label data
    json.dumps(m)  # JSON-serializable


def test_zero_division_is_zero_without_warnings():
    # 4 classes: class 1 has support but is never predicted, class 2 is predicted but has no
    # support, class 3 never occurs. predictions: [0, 2, 0, 0]
    targets = np.array([0, 0, 1, 1])
    scores = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(targets, scores, 4)
    assert m["confusion_matrix"] == [[1, 0, 1, 0], [2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    p = [r["precision"] for r in m["per_class"]]
    r = [r["recall"] for r in m["per_class"]]
    f = [r["f1"] for r in m["per_class"]]
    assert p == pytest.approx([1 / 3, 0, 0, 0])
    assert r == pytest.approx([1 / 2, 0, 0, 0])
    assert f == pytest.approx([2 / 5, 0, 0, 0])
    # macro over the classes seen in targets or predictions: 0, 1, 2
    assert m["macro"]["classes"] == 3
    assert m["macro"]["precision"] == pytest.approx(1 / 9)
    assert m["macro"]["recall"] == pytest.approx(1 / 6)
    assert m["macro"]["f1"] == pytest.approx(2 / 15)
    assert m["top1"] == pytest.approx(1 / 4)
    assert all(np.isfinite(v) for v in p + r + f)


def test_top5_and_tie_rule():
    # K = 7, so k = 5. Sample ranks of the true class: 1st, 5th, 6th.
    s = np.array([[9, 1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5, 4, 3], [9, 8, 7, 6, 5, 4, 3]], dtype=float)
    t = [0, 4, 5]
    m = classification_metrics(t, s, 7)
    assert m["top_k"] == 5
    assert m["top5"] == pytest.approx(2 / 3)
    assert m["top1"] == pytest.approx(1 / 3)
    # all scores equal: lower index ranks first (argmax -> 0; class t is in the top 5 iff t < 5)
    m = classification_metrics([0, 4, 5, 6], np.zeros((4, 7)), 7)
    assert m["top1"] == pytest.approx(1 / 4)
    assert m["top5"] == pytest.approx(2 / 4)


def test_matches_scikit_learn_on_random_case():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    k, n = 8, 300
    targets = rng.integers(0, 6, size=n)  # classes 6 and 7 never true, only (maybe) predicted
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[targets]
    m = classification_metrics(torch.from_numpy(targets), torch.from_numpy(logits).float(), k)
    pred = logits.argmax(1)
    assert m["top1"] == pytest.approx(sk.accuracy_score(targets, pred))
    assert m["top5"] == pytest.approx(sk.top_k_accuracy_score(targets, logits, k=5, labels=np.arange(k)))
    for avg in ("macro", "micro"):
        p, r, f, _ = sk.precision_recall_fscore_support(targets, pred, average=avg, zero_division=0)
        assert m[avg]["precision"] == pytest.approx(p)
        assert m[avg]["recall"] == pytest.approx(r)
        assert m[avg]["f1"] == pytest.approx(f)
    p, r, f, s = sk.precision_recall_fscore_support(
        targets, pred, labels=np.arange(k), average=None, zero_division=0
    )
    assert [row["precision"] for row in m["per_class"]] == pytest.approx(p)
    assert [row["recall"] for row in m["per_class"]] == pytest.approx(r)
    assert [row["f1"] for row in m["per_class"]] == pytest.approx(f)
    assert [row["support"] for row in m["per_class"]] == s.tolist()
    assert m["confusion_matrix"] == sk.confusion_matrix(targets, pred, labels=np.arange(k)).tolist()


def test_probabilities_and_batches_give_the_same_answer():
    logits = torch.tensor(LOGITS)
    a = classification_metrics(TARGETS, logits, 3)
    b = classification_metrics(np.array(TARGETS), logits.softmax(1).numpy(), 3)
    assert a == b
    acc = ClassificationAccumulator(3)
    acc.update(TARGETS[:4], LOGITS[:4])
    acc.update(TARGETS[4:], LOGITS[4:])
    assert acc.compute() == a


@pytest.mark.parametrize(
    "targets, scores, k, match",
    [
        ([0, 1], [[1, 0, 0]], 3, "targets but"),
        ([0, 3], [[1, 0, 0], [0, 1, 0]], 3, r"\[0, 2\]"),
        ([0, 1], [[1, 0], [0, 1]], 3, "num_classes"),
        ([0, 1], [[1, 0, float("nan")], [0, 1, 0]], 3, "NaN"),
        ([], np.zeros((0, 3)), 3, "no samples"),
        ([0], [[1.0]], 0, "num_classes"),
    ],
)
def test_bad_input_raises_value_error(targets, scores, k, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(targets, scores, k)


def test_class_names_length_checked():
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics(TARGETS, LOGITS, 3, class_names=["a", "b"])


def test_report_text():
    m = classification_metrics(TARGETS, LOGITS, 3, class_names=["cat", "dog", "fox"])
    text = format_classification_report(m)
    assert "top-1 accuracy: 0.6667" in text and "top-3 accuracy: 1.0000" in text
    assert "macro" in text and "0.7222" in text  # macro precision 13/18
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["dog"] == ["dog", "0.6667", "1.0000", "0.8000", "2"]
    assert "confusion matrix" in text
    short = format_classification_report(m, max_classes=1)
    assert "2 more classes" in short and "fox" not in short.split("confusion")[0]
