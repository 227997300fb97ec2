"""Classification metrics for ``hrcam evaluate`` (DESIGN §6), in NumPy.

For ``K`` classes and ``N`` single-label samples, with confusion matrix ``C[t, p]`` (rows = true
class ``t``, columns = predicted class ``p = argmax`` of the scores):

- top-1 accuracy ``= Σ_c C[c, c] / N``; top-k accuracy (``k = min(5, K)``) = share of samples
  whose true class is among the ``k`` highest scores (ties: the lower class index ranks first,
  the same rule as ``argmax``);
- per class ``c``: ``TP = C[c, c]``, ``FP = Σ_t C[t, c] − TP``, ``FN = Σ_p C[c, p] − TP``,
  precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, ``F1 = 2 TP / (2 TP + FP + FN)``
  (the harmonic mean of the two), support ``TP + FN``. A ratio with a zero denominator is
  defined as 0 (scikit-learn's ``zero_division=0``), so no NaN and no warning;
- macro average: the unweighted mean of the per-class values over the classes that occur in the
  targets *or* the predictions (scikit-learn's default ``labels``); classes absent from both
  would only add undefined zeros, so they are left out (``macro["classes"]`` says how many
  were averaged);
- micro average: precision = ``ΣTP / Σ(TP + FP)``, recall = ``ΣTP / Σ(TP + FN)``, F1 their
  harmonic mean; for single-label data all three equal the top-1 accuracy.

Big test sets can be fed batch by batch with :class:`ClassificationAccumulator` (it keeps only
the ``K×K`` confusion matrix and the top-k hits); :func:`classification_metrics` is the one-shot
form.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["ClassificationAccumulator", "classification_metrics", "format_classification_report"]


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (no warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


class ClassificationAccumulator:
    """Running confusion matrix and top-k hits; :meth:`compute` gives the metrics dict."""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, top_k: int = 5):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if class_names is not None:
            class_names = [str(n) for n in class_names]
            if len(class_names) != num_classes:
                raise ValueError(
                    f"class_names has {len(class_names)} entries but num_classes is {num_classes}"
                )
        self.num_classes = int(num_classes)
        self.class_names = class_names
        self.k = min(int(top_k), self.num_classes)
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.topk_hits = 0
        self.count = 0

    def update(self, targets, scores) -> None:
        """Add a batch: ``targets`` (N integer labels) and ``scores`` (N×K logits or probabilities)."""
        t = _as_numpy(targets)
        s = _as_numpy(scores)
        if t.ndim != 1:
            raise ValueError(f"targets must be 1-D (N labels), got shape {t.shape}")
        if s.ndim != 2 or s.shape[1] != self.num_classes:
            raise ValueError(
                f"logits_or_probs must be N×{self.num_classes} (num_classes), got shape {s.shape}"
            )
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"{t.shape[0]} targets but {s.shape[0]} rows of scores")
        if t.size == 0:
            return
        if not (np.issubdtype(t.dtype, np.integer) or np.all(np.mod(t, 1) == 0)):
            raise ValueError("targets must be integer class indices")
        t = t.astype(np.int64)
        if t.min() < 0 or t.max() >= self.num_classes:
            raise ValueError(f"targets must lie in [0, {self.num_classes - 1}]")
        s = s.astype(np.float64, copy=False)
        if not np.isfinite(s).all():
            raise ValueError("logits_or_probs contain NaN or inf")
        pred = s.argmax(axis=1)
        k = self.num_classes
        self.confusion += np.bincount(t * k + pred, minlength=k * k).reshape(k, k)
        # rank of the true class = number of classes that beat it (higher score, or equal score
        # and lower index); it is in the top-k when fewer than k classes beat it.
        true_score = s[np.arange(len(t)), t][:, None]
        idx = np.arange(k)[None, :]
        beats = (s > true_score) | ((s == true_score) & (idx < t[:, None]))
        self.topk_hits += int((beats.sum(axis=1) < self.k).sum())
        self.count += len(t)

    def compute(self) -> dict:
        """The metrics dict (JSON-serializable: Python floats, ints, lists)."""
        if self.count == 0:
            raise ValueError("no samples: cannot compute classification metrics")
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        support = cm.sum(axis=1)
        predicted = cm.sum(axis=0)
        precision = _ratio(tp, predicted)
        recall = _ratio(tp, support)
        f1 = _ratio(2 * tp, support + predicted)
        used = (support > 0) | (predicted > 0)
        n = float(self.count)
        micro_p = float(_ratio(tp.sum(), predicted.sum()))
        micro_r = float(_ratio(tp.sum(), support.sum()))
        micro_f1 = float(_ratio(2 * micro_p * micro_r, micro_p + micro_r))
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        per_class = [
            {
                "index": i,
                "name": names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(self.num_classes)
        ]
        return {
            "num_samples": int(self.count),
            "num_classes": self.num_classes,
            "top1": float(tp.sum() / n),
            "top5": float(self.topk_hits / n),
            "top_k": self.k,
            "macro": {
                "precision": float(precision[used].mean()),
                "recall": float(recall[used].mean()),
                "f1": float(f1[used].mean()),
                "classes": int(used.sum()),
            },
            "micro": {"precision": micro_p, "recall": micro_r, "f1": micro_f1},
            "per_class": per_class,
            "confusion_matrix": cm.tolist(),
            "class_names": list(names),
        }


def classification_metrics(targets, logits_or_probs, num_classes: int, class_names: Sequence[str] | None = None) -> dict:
    """Top-1, top-k (k = min(5, K)), macro/micro precision/recall/F1, per-class report, confusion.

    ``targets``: N integer labels; ``logits_or_probs``: N×K scores (NumPy or torch; logits and
    probabilities give the same result, since only their order is used). Returns a
    JSON-serializable dict with keys ``num_samples``, ``num_classes``, ``top1``, ``top5`` (top-k
    accuracy with ``k = top_k``), ``top_k``, ``macro`` and ``micro`` (``precision``, ``recall``,
    ``f1``), ``per_class`` (list of ``index, name, precision, recall, f1, support``),
    ``confusion_matrix`` (K×K list, rows = true class) and ``class_names``. Definitions in the
    module docstring.
    """
    acc = ClassificationAccumulator(num_classes, class_names)
    acc.update(targets, logits_or_probs)
    return acc.compute()


def format_classification_report(metrics: dict, max_classes: int | None = 50, max_confusion: int = 12) -> str:
    """A readable text report of :func:`classification_metrics`'s dict for the terminal.

    Summary (top-1, top-k, macro and micro P/R/F1), then the per-class table (the first
    ``max_classes`` rows; ``None`` = all) and, for at most ``max_confusion`` classes, the
    confusion matrix (rows = true class).
    """
    k = metrics.get("top_k", 5)
    lines = [
        f"samples: {metrics['num_samples']}   classes: {metrics['num_classes']}",
        f"top-1 accuracy: {metrics['top1']:.4f}   top-{k} accuracy: {metrics['top5']:.4f}",
        "",
        f"{'average':<10}{'precision':>10}{'recall':>10}{'f1':>10}",
    ]
    for avg in ("macro", "micro"):
        m = metrics[avg]
        lines.append(f"{avg:<10}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}")
    per_class = metrics["per_class"]
    shown = per_class if max_classes is None else per_class[:max_classes]
    width = max([len("class")] + [len(str(r["name"])) for r in shown])
    width = min(width, 40)
    lines += ["", f"{'class':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"]
    for r in shown:
        name = str(r["name"])[:width]
        lines.append(
            f"{name:<{width}}  {r['precision']:>9.4f}  {r['recall']:>9.4f}  {r['f1']:>9.4f}  {r['support']:>7d}"
        )
    if len(shown) < len(per_class):
        lines.append(f"... {len(per_class) - len(shown)} more classes (see the JSON report)")
    cm = metrics.get("confusion_matrix")
    if cm is not None and len(cm) <= max_confusion:
        cell = max(4, max(len(str(v)) for row in cm for v in row) + 1)
        lines += ["", "confusion matrix (rows = true, columns = predicted):"]
        lines.append(" " * 6 + "".join(f"{j:>{cell}d}" for j in range(len(cm))))
        for i, row in enumerate(cm):
            lines.append(f"{i:>6d}" + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
