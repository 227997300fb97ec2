"""Faithfulness of saliency maps to the classifier (DESIGN §6).

Every function takes ``model`` (``model(x) -> logits N×K``, input in [0, 1] image space —
hrcam models normalize internally, so masking happens *before* any normalization), ``images``
(anything :func:`hrcam.data.transforms.as_batch` accepts) and ``maps`` (N×H×W at input
resolution, any scale: each map is min-max normalized here). Work runs batched on the model's
device under ``torch.no_grad()``. Put the model in eval mode first (these functions do not
change it).

Invalid maps are never scored: a map with NaN/inf (``nonfinite``), all zeros (``all_zero``) or
one constant value (``constant``) is excluded from every mean; the counts are returned under
``excluded`` and the number of scored images under ``n``. Means over zero images are NaN.

Definitions (p_c = softmax probability of class c; c = the explained class, by default the
prediction on the unmodified image):

- **Average Drop / Increase in Confidence** at q (L-CAM/TAME): ``M`` = normalized map with its
  lowest ``⌊q·H·W⌋`` pixels set to 0 (soft mask otherwise); ``Y = p_c(x)``, ``O = p_c(x ⊙ M)``;
  ``AD = 100/N Σ max(0, Y − O)/Y``, ``IC = 100/N Σ 1[O > Y]``.
- **masked-in / masked-out / inpainted** (CASM): ``b = 1[norm(map) ≥ threshold]`` (default 0.5,
  half of the map's range); images ``b·x``, ``(1 − b)·x`` and OpenCV TELEA inpainting (radius 3)
  of the pixels where ``b = 1``; top-1 / top-5 accuracy against ``labels`` (the clean
  predictions when no labels are given) and mean entropy ``−Σ_k p_k ln p_k`` (nats).
- **deletion / insertion**: pixels ranked by the map (descending; ties by pixel index); at step
  i = 0..S (S = 20) the top ``⌊i·H·W/S⌋`` pixels are set to the baseline 0 (deletion) or are the
  only ones kept from x over a zero image (insertion); AUC = trapezoid rule of p_c over the
  removed/inserted fraction i/S ∈ [0, 1]. Optional baselines: the image's mean colour, or an
  inpainting of the removed pixels from the kept ones (:data:`REMOVAL_BASELINES`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hrcam.data.transforms import as_batch
from hrcam.normalization import minmax_normalize

EXCLUSION_REASONS = ("nonfinite", "all_zero", "constant")
AD_IC_LEVELS = (0.0, 0.5, 0.85)


# -- helpers -------------------------------------------------------------------------------------
def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _as_maps(maps, images: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).detach()
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"maps: expected N×H×W, got shape {tuple(m.shape)}")
    n, _, h, w = images.shape
    if m.shape[0] != n or tuple(m.shape[1:]) != (h, w):
        raise ValueError(f"maps: shape {tuple(m.shape)} does not match images {n}×{h}×{w}")
    return m.float()


def exclusion_reasons(maps) -> list[str | None]:
    """Per map: ``None`` (valid) or the reason it is excluded (:data:`EXCLUSION_REASONS`)."""
    m = torch.as_tensor(maps).detach().float()
    flat = m.reshape(m.shape[0], -1)
    out: list[str | None] = []
    finite = torch.isfinite(flat).all(dim=1)
    zero = (flat == 0).all(dim=1)
    const = flat.amax(dim=1) == flat.amin(dim=1)
    for i in range(flat.shape[0]):
        if not finite[i]:
            out.append("nonfinite")
        elif zero[i]:
            out.append("all_zero")
        elif const[i]:
            out.append("constant")
        else:
            out.append(None)
    return out


def count_excluded(reasons) -> dict[str, int]:
    """Counts per reason (every reason listed, zeros included)."""
    return {r: sum(1 for x in reasons if x == r) for r in EXCLUSION_REASONS}


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max normalization to [0, 1] (maps must be valid, i.e. non-constant)."""
    return minmax_normalize(maps)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``−Σ_k p_k ln p_k`` (nats) of softmax(logits), one value per row."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def _select(images, maps, classes):
    """Shared input handling → (x on device, valid maps, classes or None, reasons, valid index)."""
    x, _ = as_batch(images)
    m = _as_maps(maps, x)
    reasons = exclusion_reasons(m)
    keep = torch.tensor([r is None for r in reasons], dtype=torch.bool)
    if classes is not None:
        c = torch.as_tensor(classes, dtype=torch.long).reshape(-1).cpu()
        if c.numel() == 1:
            c = c.expand(x.shape[0])
        if c.numel() != x.shape[0]:
            raise ValueError(f"classes: got {c.numel()} classes for {x.shape[0]} images")
        classes = c[keep]
    return x[keep.to(x.device)], m[keep.to(m.device)], classes, reasons


def _logits(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    dev = _device(model)
    outs = [model(x[i : i + batch_size].to(dev)).float() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, 0)


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


def _prob_of(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1).gather(1, classes.to(logits.device)[:, None])[:, 0].cpu()


def drop_lowest(maps: torch.Tensor, q: float) -> torch.Tensor:
    """Normalized maps with their lowest ``⌊q·H·W⌋`` pixels zeroed (ties broken by pixel index)."""
    if not 0.0 <= q < 1.0:
        raise ValueError(f"q: expected a fraction in [0, 1), got {q!r}")
    m = normalize(maps)
    flat = m.reshape(m.shape[0], -1)
    k = int(math.floor(q * flat.shape[1]))
    if k == 0:
        return m
    order = torch.argsort(flat, dim=1, stable=True)
    out = flat.clone()
    out.scatter_(1, order[:, :k], 0.0)
    return out.reshape(m.shape)


def _result(n, reasons, values: dict) -> dict:
    return {**values, "n": int(n), "excluded": count_excluded(reasons)}


def _mean(t: torch.Tensor) -> float:
    return float(t.float().mean()) if t.numel() else float("nan")


# -- metrics ---------------------------------------------------------------------------------------
@torch.no_grad()
def average_drop_increase(model, images, maps, classes=None, qs=AD_IC_LEVELS, batch_size: int = 32) -> dict:
    """Average Drop and Increase in Confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018).

    With ``Y = p_c(x)`` and ``O = p_c(x ⊙ M_q)``, ``M_q`` the normalized map with its lowest
    ``q`` fraction of pixels zeroed (:func:`drop_lowest`):
    ``AD@q = 100/N · Σ max(0, Y − O) / Y`` (lower is better) and ``IC@q = 100/N · Σ 1[O > Y]``
    (higher is better). Invalid maps are excluded and counted (:func:`exclusion_reasons`).

    Example:
        >>> scores = average_drop_increase(model, images, maps, qs=(0.0, 0.5))
        >>> scores["AD@0.5"], scores["IC@0.5"], scores["n"]

    Args:
        model: the classifier (``model(x)`` gives logits).
        images: ``N×C×H×W`` in [0, 1].
        maps: ``N×H×W`` maps at image size.
        classes: the explained class per image (default: the model's prediction).
        qs: the fractions of pixels removed.
        batch_size: images per forward pass.

    Returns:
        ``{"AD@q", "IC@q"}`` for each ``q`` (percent), plus ``n`` and ``excluded``.

    Raises:
        ValueError: a bad ``batch_size``, ``q`` outside [0, 1), or inputs of different sizes.
    """
    _check_batch_size(batch_size)
    x, m, classes, reasons = _select(images, maps, classes)
    out: dict = {}
    if x.shape[0]:
        clean = _logits(model, x, batch_size)
        if classes is None:
            classes = clean.argmax(dim=1).cpu()
        y = _prob_of(clean, classes)
    for q in qs:
        key = f"{q:g}"
        if not x.shape[0]:
            out[f"AD@{key}"] = out[f"IC@{key}"] = float("nan")
            continue
        masked = x * drop_lowest(m, float(q))[:, None]
        o = _prob_of(_logits(model, masked, batch_size), classes)
        out[f"AD@{key}"] = 100.0 * _mean(torch.clamp(y - o, min=0) / y)
        out[f"IC@{key}"] = 100.0 * _mean((o > y).float())
    return _result(x.shape[0], reasons, out)


def binarize(maps: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``b = 1[norm(map) ≥ threshold]`` per map (bool N×H×W)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: expected a value in (0, 1], got {threshold!r}")
    return normalize(maps) >= threshold


def inpaint_telea(images: torch.Tensor, remove: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """OpenCV TELEA inpainting of the pixels where ``remove`` is True.

    ``images`` N×C×H×W in [0, 1] (any C: 1 and 3 channels are inpainted together, others channel
    by channel); OpenCV works on 8-bit images, so the filled pixels are multiples of 1/255 and the
    kept pixels are the original values. (8-bit on purpose: OpenCV 5.0's Telea on float32 images
    returns values far outside the data range; on 8-bit data a flat hole comes back flat within a
    few grey levels, see opencv/opencv#25404.)
    """
    import cv2

    x = images.detach().cpu()
    keep_mask = remove.detach().cpu().bool()
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    masks = keep_mask.numpy().astype(np.uint8) * 255
    filled = np.empty_like(u8)
    for i in range(u8.shape[0]):
        img = np.ascontiguousarray(u8[i])
        if img.shape[2] in (1, 3):
            res = cv2.inpaint(img, masks[i], radius, cv2.INPAINT_TELEA)
            filled[i] = res.reshape(img.shape)
        else:
            for ch in range(img.shape[2]):
                filled[i, :, :, ch] = cv2.inpaint(np.ascontiguousarray(img[:, :, ch]), masks[i], radius, cv2.INPAINT_TELEA)
    filled_t = torch.from_numpy(filled).permute(0, 3, 1, 2).float() / 255.0
    return torch.where(keep_mask[:, None], filled_t, x).to(images.device)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices.cpu()
    return (top == labels[:, None]).any(dim=1).float()


@torch.no_grad()
def masked_accuracy(model, images, maps, labels=None, threshold: float = 0.5, radius: int = 3, batch_size: int = 32) -> dict:
    """Top-1 / top-5 accuracy and mean entropy on masked-in, masked-out and inpainted images.

    The CASM evaluation (Zolna et al., "Classifier-agnostic saliency map extraction", CVIU 2020):
    with ``b = 1[norm(m) ≥ threshold]``, the classifier sees ``b·x`` (masked in: high accuracy is
    better), ``(1 − b)·x`` (masked out: low is better) and ``x`` with the region ``b`` inpainted
    by OpenCV's TELEA method (:func:`inpaint_telea`), and
    ``entropy = −Σ_k p_k ln p_k`` (:func:`entropy`).

    Example:
        >>> scores = masked_accuracy(model, images, maps, labels)
        >>> scores["masked_in_top1"], scores["masked_out_top1"], scores["inpainted_top1"]

    Args:
        model: the classifier (``model(x)`` gives logits).
        images: ``N×C×H×W`` in [0, 1].
        maps: ``N×H×W`` maps at image size.
        labels: the true classes (default: the clean predictions).
        threshold: binarization threshold on the normalized map, in (0, 1].
        radius: the inpainting radius in pixels.
        batch_size: images per forward pass.

    Returns:
        ``{masked_in,masked_out,inpainted}_{top1,top5,entropy}`` (accuracies as fractions in
        [0, 1]), plus ``n`` and ``excluded``.

    Raises:
        ValueError: a bad ``threshold`` or ``batch_size``, or inputs of different sizes.
    """
    _check_batch_size(batch_size)
    x, m, labels, reasons = _select(images, maps, labels)
    out: dict = {}
    variants = ("masked_in", "masked_out", "inpainted")
    if not x.shape[0]:
        for v in variants:
            for s in ("top1", "top5", "entropy"):
                out[f"{v}_{s}"] = float("nan")
        return _result(0, reasons, out)
    if labels is None:
        labels = _logits(model, x, batch_size).argmax(dim=1).cpu()
    b = binarize(m, threshold)
    imgs = {
        "masked_in": x * b[:, None],
        "masked_out": x * (~b)[:, None],
        "inpainted": inpaint_telea(x, b, radius),
    }
    for v in variants:
        logits = _logits(model, imgs[v], batch_size)
        out[f"{v}_top1"] = _mean(_accuracy(logits, labels, 1))
        out[f"{v}_top5"] = _mean(_accuracy(logits, labels, 5))
        out[f"{v}_entropy"] = _mean(entropy(logits).cpu())
    return _result(x.shape[0], reasons, out)


def _pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """rank[n, p] = position of pixel p when sorted by descending map value (0 = most salient)."""
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.argsort(-flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order).contiguous())
    return ranks.reshape(maps.shape)


def trapezoid_auc(values: torch.Tensor) -> torch.Tensor:
    """Trapezoid AUC of curves sampled at equally spaced fractions 0, 1/S, …, 1 (last dim)."""
    s = values.shape[-1] - 1
    return ((values[..., 1:] + values[..., :-1]) / 2).sum(dim=-1) / s


#: what removed pixels become in deletion / insertion: black (RISE's deletion), each image's mean
#: colour, or an inpainting of the removed pixels from the kept ones (see :func:`deletion_insertion`)
REMOVAL_BASELINES = ("zero", "mean", "inpaint")


def _remove(x: torch.Tensor, remove: torch.Tensor, baseline: str, fill: torch.Tensor | None) -> torch.Tensor:
    """``x`` with the pixels where the N×1×H×W ``remove`` is True replaced as ``baseline`` says.

    ``inpaint`` fills them by OpenCV's TELEA method from the kept pixels; an image with no kept
    pixel has nothing to inpaint from and becomes black, as with ``zero``.
    """
    if baseline != "inpaint":
        return torch.where(remove, fill, x)
    out = torch.zeros_like(x)
    some = ~remove.reshape(remove.shape[0], -1).all(dim=1)
    if bool(some.any()):
        out[some] = inpaint_telea(x[some], remove[some, 0]).to(x.dtype)
    return out


@torch.no_grad()
def deletion_insertion_curves(model, images, maps, classes=None, steps: int = 20, batch_size: int = 32,
                              baseline: str = "zero"):
    """``(deletion N×(S+1), insertion N×(S+1), classes, reasons)`` of p_c for the valid maps."""
    _check_batch_size(batch_size)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if baseline not in REMOVAL_BASELINES:
        raise ValueError(f"baseline: expected one of {', '.join(REMOVAL_BASELINES)}, got {baseline!r}")
    x, m, classes, reasons = _select(images, maps, classes)
    n = x.shape[0]
    if n == 0:
        return torch.zeros(0, steps + 1), torch.zeros(0, steps + 1), classes, reasons
    if classes is None:
        classes = _logits(model, x, batch_size).argmax(dim=1).cpu()
    hw = m.shape[1] * m.shape[2]
    ranks = _pixel_ranks(m)
    dele = torch.empty(n, steps + 1)
    ins = torch.empty(n, steps + 1)
    fill = None if baseline == "inpaint" else (
        x.mean(dim=(2, 3), keepdim=True).expand_as(x) if baseline == "mean" else torch.zeros_like(x))
    for i in range(steps + 1):
        k = (i * hw) // steps
        top = (ranks < k)[:, None]
        dele[:, i] = _prob_of(_logits(model, _remove(x, top, baseline, fill), batch_size), classes)
        ins[:, i] = _prob_of(_logits(model, _remove(x, ~top, baseline, fill), batch_size), classes)
    return dele, ins, classes, reasons


def deletion_insertion(model, images, maps, classes=None, steps: int = 20, batch_size: int = 32,
                       baseline: str = "zero") -> dict:
    """Deletion and insertion AUC (Petsiuk et al., "RISE", BMVC 2018).

    Pixels ranked by the map; at step ``i`` of ``S`` the top ``i/S`` fraction is removed (set to
    zero, or with ``baseline='mean'`` to the image's mean colour: deletion) or is all that is kept
    (insertion, the rest removed the same way), and ``p_c`` of the result is recorded. A zero
    baseline cannot remove a black object (its pixels already are zero), which favours maps of
    its outline; the mean colour is a check against that. Both fills leave the *shape* of what
    was removed in the image: delete exactly an object's pixels and its silhouette, in the fill
    colour, is still there for a shape-reading classifier (the leak of Rong et al., "A Consistent
    and Efficient Evaluation Strategy for Attribution Methods", ICML 2022, whose ROAD imputes
    removed pixels from their neighbours). ``baseline='inpaint'`` fills them from the kept pixels
    around them (OpenCV's TELEA, :func:`inpaint_telea`; an image with nothing kept is black), so
    removing an object removes its outline too. It costs one inpainting per image and step.
    ``AUC = Σ_i (p_i + p_{i+1}) / 2S`` (trapezoid over the fraction in [0, 1]); a faithful map
    has a low deletion and a high insertion AUC.

    Example:
        >>> deletion_insertion(model, images, maps, steps=20)["deletion_auc"]

    Args:
        model: the classifier (``model(x)`` gives logits).
        images: ``N×C×H×W`` in [0, 1].
        maps: ``N×H×W`` maps at image size.
        classes: the explained class per image (default: the model's prediction).
        steps: ``S``, the number of steps.
        batch_size: images per forward pass.
        baseline: what removed pixels become, one of :data:`REMOVAL_BASELINES` (default ``zero``).

    Returns:
        ``{"deletion_auc", "insertion_auc", "n", "excluded"}``.

    Raises:
        ValueError: a bad ``steps`` or ``batch_size``, or inputs of different sizes.
    """
    dele, ins, _, reasons = deletion_insertion_curves(model, images, maps, classes, steps, batch_size, baseline)
    return _result(
        dele.shape[0],
        reasons,
        {"deletion_auc": _mean(trapezoid_auc(dele)), "insertion_auc": _mean(trapezoid_auc(ins))},
    )


def faithfulness(model, images, maps, labels=None, classes=None, *, qs=AD_IC_LEVELS, threshold: float = 0.5,
                 steps: int = 20, batch_size: int = 32, baseline: str = "zero") -> dict:
    """Every faithfulness metric of DESIGN §6 in one flat dict (plus ``n`` and ``excluded``).

    :func:`average_drop_increase` (with ``classes``), :func:`masked_accuracy` (with ``labels``)
    and :func:`deletion_insertion` (with ``classes``), merged.

    Example:
        >>> faithfulness(model, images, maps, labels=labels)["insertion_auc"]

    Args:
        model: the classifier.
        images: ``N×C×H×W`` in [0, 1].
        maps: ``N×H×W`` maps at image size.
        labels: true classes for the masked accuracies (default: the clean predictions).
        classes: explained classes for AD/IC and deletion/insertion (default: the predictions).
        qs: AD/IC removal fractions.
        threshold: the masked accuracies' binarization threshold.
        steps: deletion/insertion steps.
        batch_size: images per forward pass.
        baseline: deletion/insertion's removal baseline, one of :data:`REMOVAL_BASELINES`.

    Raises:
        ValueError: as the three metrics.
    """
    out: dict = {}
    for part in (
        average_drop_increase(model, images, maps, classes, qs=qs, batch_size=batch_size),
        masked_accuracy(model, images, maps, labels, threshold=threshold, batch_size=batch_size),
        deletion_insertion(model, images, maps, classes, steps=steps, batch_size=batch_size, baseline=baseline),
    ):
        out.update(part)
    return out
