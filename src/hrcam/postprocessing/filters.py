"""Per-image filters applied to whole stacks of maps at once (``N×H×W`` arrays).

Each function works image by image in the sense that the value computed for image ``n`` depends
only on ``maps[n]``, with exactly the same arithmetic whatever ``N`` is — so running a batch or
running its images one at a time gives bit-identical results.

The 2-D filters use OpenCV, one call per image (OpenCV filters 2-D images; a Python loop of
``N`` calls costs microseconds). ``cv2.BORDER_REFLECT`` (``d c b a | a b c d``) is SciPy's and
scikit-image's ``'reflect'`` border. Where the reference libraries sum in double precision and
round once to float32, so do we (see :func:`box_blur` and :func:`sobel_magnitude`): the two
double-precision values agree to a few units in the 16th digit, so they round to the same
float32 unless one falls that close to a float32 rounding boundary (odds of about 1e-8 per
pixel). The tests check bit-identity with ``scipy.ndimage``/``skimage.filters`` on random maps,
including values spread over many orders of magnitude.
"""
from __future__ import annotations

import cv2
import numpy as np

WORK_DTYPE = np.float32  # CAMs come out of the networks as float32; halves memory traffic

__all__ = [
    "WORK_DTYPE",
    "as_work",
    "normalize",
    "box_blur",
    "sobel_magnitude",
    "resize_bilinear",
    "resize_nearest",
    "percentile",
    "ragged_percentiles",
    "RowRanks",
    "values_at_ranks",
    "top_k_mask",
    "count_per_row",
    "stack_nonzero",
]

_REFLECT = cv2.BORDER_REFLECT  # "d c b a | a b c d" = scipy.ndimage / scikit-image mode="reflect"
_SQRT2 = np.sqrt(2, dtype=WORK_DTYPE)


def as_work(a) -> np.ndarray:
    """``a`` as a :data:`WORK_DTYPE` array (no copy when it already is one)."""
    return np.asarray(a, dtype=WORK_DTYPE)


def _output(out: np.ndarray | None, shape, dtype=WORK_DTYPE) -> np.ndarray:
    return np.empty(shape, dtype=dtype) if out is None else out


def normalize(
    maps: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Min-max normalize each map: ``norm(a) = (a − min a) / (max a − min a)``.

    ``maps`` is ``N×…``; min and max are taken per map (or given as length-N ``lo``/``hi``).
    A constant map becomes all zeros (never NaN). Returns :data:`WORK_DTYPE` (into ``out`` if
    given, which may be ``maps`` itself).
    """
    a = as_work(maps)
    axes = tuple(range(1, a.ndim))
    shape = (a.shape[0],) + (1,) * (a.ndim - 1)
    lo = a.min(axis=axes) if lo is None else lo
    hi = a.max(axis=axes) if hi is None else hi
    lo = as_work(lo).reshape(shape)
    rng = as_work(hi).reshape(shape) - lo
    flat = rng <= 0
    out = np.subtract(a, lo, out=_output(out, a.shape))
    out /= np.where(flat, np.ones((), WORK_DTYPE), rng)  # constant map: a − min is already 0
    return out


def box_blur(maps: np.ndarray, size: int = 5, out: np.ndarray | None = None) -> np.ndarray:
    """``size×size`` mean filter of each ``N×H×W`` map, reflect border (``d c b a | a b c d``).

    ``box(a)(i, j) = (1/size²) · Σ_{|di|,|dj| ≤ size//2} a(i+di, j+dj)``, computed separably as
    ``scipy.ndimage.uniform_filter`` does: the mean over ``size`` rows first (double-precision
    sum, rounded to float32), then the mean of that over ``size`` columns. Both passes are
    OpenCV's vertical ``size×1`` box filter (vectorized; its horizontal one is not): the second
    runs on the transposed image. ``out``, if given, must be C-contiguous (OpenCV writes into it).
    """
    if size % 2 != 1:
        raise ValueError(f"box filter size must be odd, got {size}")
    a = np.ascontiguousarray(as_work(maps))
    out = _output(out, a.shape)
    _, H, W = a.shape
    rows = np.empty((H, W), WORK_DTYPE)
    cols_t, mean_t = np.empty((W, H), WORK_DTYPE), np.empty((W, H), WORK_DTYPE)
    k = (1, size)  # OpenCV sizes are (width, height): a vertical window
    for src, dst in zip(a, out):
        cv2.blur(src, k, dst=rows, borderType=_REFLECT)
        cv2.transpose(rows, dst=cols_t)
        cv2.blur(cols_t, k, dst=mean_t, borderType=_REFLECT)
        cv2.transpose(mean_t, dst=dst)
    return out


def sobel_magnitude(maps: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """scikit-image's ``filters.sobel`` of each ``N×H×W`` map, bit for bit.

    ``sobel(a) = sqrt((g_r² + g_c²) / 2)`` where ``g_r = a ∗ ([1,0,−1]ᵀ·[1,2,1]/4)`` and
    ``g_c = a ∗ ([1,2,1]ᵀ/4·[1,0,−1])`` with a reflect border. Like scikit-image (through
    ``scipy.ndimage.convolve``) we sum the six products in double precision and round the
    gradient once to float32 (OpenCV's Sobel with a float64 output; the sign of the kernel does
    not matter as it is squared); the magnitude is then float32 arithmetic in scikit-image's
    order: ``sqrt(g_r² + g_c²) / sqrt(2)``. ``out``, if given, must be C-contiguous.
    """
    a = np.ascontiguousarray(as_work(maps))
    out = _output(out, a.shape)
    H, W = a.shape[1:]
    g64 = np.empty((H, W), np.float64)
    g_c = np.empty((H, W), WORK_DTYPE)
    for src, g_r in zip(a, out):  # image by image: the temporaries stay in cache
        cv2.Sobel(src, cv2.CV_64F, 0, 1, dst=g64, ksize=3, scale=0.25, borderType=_REFLECT)
        np.copyto(g_r, g64, casting="same_kind")
        cv2.Sobel(src, cv2.CV_64F, 1, 0, dst=g64, ksize=3, scale=0.25, borderType=_REFLECT)
        np.copyto(g_c, g64, casting="same_kind")
        np.multiply(g_r, g_r, out=g_r)
        np.multiply(g_c, g_c, out=g_c)
        np.add(g_r, g_c, out=g_r)
        np.sqrt(g_r, out=g_r)
        np.divide(g_r, _SQRT2, out=g_r)
    return out


def count_per_row(masks: np.ndarray) -> np.ndarray:
    """Number of ``True`` pixels of each mask of a stack (``N×…`` → ``N`` ints).

    One ``np.count_nonzero`` per mask: the whole-array count is vectorized, while
    ``count_nonzero(axis=…)`` sums the mask as integers (about 10× slower)."""
    return np.array([np.count_nonzero(m) for m in masks], dtype=np.intp).reshape(len(masks))


def stack_nonzero(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, y, x)`` index arrays of the ``True`` pixels of an ``N×H×W`` stack, in raster order.

    Equal to ``np.nonzero(masks)``, from one flat ``np.flatnonzero`` (which has a fast path that
    the 3-D ``nonzero`` lacks) and integer division of the flat indices."""
    n, H, W = masks.shape
    flat = np.flatnonzero(masks)
    ns, rest = np.divmod(flat, H * W)
    ys, xs = np.divmod(rest, W)
    return ns, ys, xs


def _bilinear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight for half-pixel-centred bilinear resampling of one axis.

    Output pixel ``i`` samples the input at ``s = (i + 0.5)·src/dst − 0.5`` (clamped to
    ``[0, src−1]``): ``i0 = floor(s)``, ``i1 = min(i0+1, src−1)``, weight ``t = s − i0``.
    """
    s = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    s = np.clip(s, 0.0, src - 1)
    i0 = np.floor(s).astype(np.intp)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, s - i0


def resize_bilinear(maps: np.ndarray, shape: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of each ``N×h×w`` map to ``N×H×W`` (half-pixel centres, edge clamp).

    Columns first, then rows: ``c = a[:, x0] + (a[:, x1] − a[:, x0])·t_x`` (on the small map),
    ``out = c[y0] + (c[y1] − c[y0])·t_y`` (whole rows at a time, the cheap direction; the row
    differences ``c[y1] − c[y0]`` are taken on the small map, as ``y1`` is a function of ``y0``).
    This is the usual "align_corners=False" bilinear upsampling (PIL, OpenCV, PyTorch), done
    with element-wise arithmetic only, so every image gets identical numbers in any batch (and a
    same-size "resize" returns the map unchanged, as ``t = 0`` there; a constant map stays
    exactly constant, which ``cv2.resize``'s weighted sums do not guarantee).
    """
    a = as_work(maps)
    H, W = shape
    y0, _, ty = _bilinear_taps(a.shape[1], H)
    x0, x1, tx = _bilinear_taps(a.shape[2], W)
    # np.take keeps C order (fancy indexing on the last axis would return a transposed layout)
    cols = np.take(a, x0, axis=2)
    step = np.take(a, x1, axis=2)
    step -= cols
    step *= tx.astype(a.dtype)[None, None, :]
    cols += step
    h = a.shape[1]
    below = np.minimum(np.arange(h) + 1, h - 1)  # y1 of a source row y0 (edge clamped)
    row_step = np.take(cols, below, axis=1)
    row_step -= cols
    out = np.take(cols, y0, axis=1, out=out)
    step = np.take(row_step, y0, axis=1)
    step *= ty.astype(a.dtype)[None, :, None]
    out += step
    return out


def resize_nearest(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of each ``N×h×w`` map: output ``(i, j)`` takes input
    ``(floor((i+0.5)·h/H), floor((j+0.5)·w/W))``."""
    a = np.asarray(maps)
    H, W = shape
    h, w = a.shape[1:3]
    yi = np.minimum(((np.arange(H) + 0.5) * (h / H)).astype(np.intp), h - 1)
    xi = np.minimum(((np.arange(W) + 0.5) * (w / W)).astype(np.intp), w - 1)
    return np.take(np.take(a, yi, axis=1), xi, axis=2)


def _virtual_index(count: int, q: float) -> tuple[int, float]:
    """NumPy's 'linear' percentile position: ``v = (count − 1)·q/100``, split into floor and fraction."""
    v = (count - 1) * (np.float64(q) / 100)
    lo = int(np.floor(v))
    return lo, float(v - lo)


def _lerp(a: np.ndarray, b: np.ndarray, g: float) -> np.ndarray:
    """NumPy's percentile interpolation: ``a + (b−a)·g`` (``b − (b−a)·(1−g)`` when ``g ≥ 0.5``).

    As ``np.percentile(a, q)`` does for a scalar ``q``, the arithmetic stays in the data's dtype
    (``g`` is a Python float)."""
    d = b - a
    return b - d * (1.0 - g) if g >= 0.5 else a + d * g


def values_at_ranks(values: np.ndarray, ranks) -> dict[int, np.ndarray]:
    """Order statistics along the last axis: ``{r: sorted(values)[..., r]}`` for each rank ``r``.

    Nested single-rank partitions (``np.partition`` with one ``kth`` on the full rows, then on the
    shrinking upper remainder), which is several times cheaper than one ``np.partition`` with
    many ``kth`` values. The rank just above a partition point (e.g. the two neighbours of a
    percentile) is the minimum of the remainder: one reduction instead of a partition.
    """
    out: dict[int, np.ndarray] = {}
    block, offset = values, 0
    for r in sorted(set(int(r) for r in ranks)):
        if r == offset:  # the smallest value of the remainder
            out[r] = block.min(axis=-1)
            continue
        part = np.partition(block, r - offset, axis=-1)
        out[r] = part[..., r - offset]
        block, offset = part[..., r - offset + 1:], r + 1
    return out


class RowRanks:
    """Order statistics of every map of a stack from partial sorts (``np.partition``).

    Built with the percentiles and top-k counts that will be asked for, it answers
    :meth:`percentile` (equal to ``np.percentile(map, q)``, linear method), :meth:`top_k`,
    and the per-map ``min``/``max``, partitioning each ``H·W`` row only once at full length.
    """

    def __init__(self, maps: np.ndarray, percentiles=(), top_ks=()):
        a = np.asarray(maps)
        self.shape = a.shape
        self.flat = a.reshape(a.shape[0], -1)
        m = self.flat.shape[1]
        self.min = self.flat.min(axis=1)
        self.max = self.flat.max(axis=1)
        ranks = set()
        for q in percentiles:
            lo, _ = _virtual_index(m, q)
            ranks.update((lo, min(lo + 1, m - 1)))
        ranks.update(m - k for k in top_ks if 0 < k < m)
        self.values = values_at_ranks(self.flat, ranks)

    def percentile(self, q: float) -> np.ndarray:
        """``pct(map, q)`` for every map (shape N, the maps' dtype)."""
        m = self.flat.shape[1]
        lo, g = _virtual_index(m, q)
        hi = min(lo + 1, m - 1)
        return _lerp(self.values[lo], self.values[hi], g).astype(self.flat.dtype)

    def top_k(self, k: int) -> np.ndarray:
        """Boolean mask (the maps' shape) of the ``k`` largest pixels of each map, exactly ``k``.

        Ties at the cut are broken in raster order (row by row, left to right), so the result is
        deterministic and the same for a map alone or inside a batch.
        """
        n, m = self.flat.shape
        if k <= 0:
            return np.zeros(self.shape, dtype=bool)
        if k >= m:
            return np.ones(self.shape, dtype=bool)
        cut = self.values[m - k][:, None]  # the k-th largest value of each map
        keep = self.flat >= cut  # the k largest and any further pixels tied with the k-th
        surplus = count_per_row(keep) - k
        for i in np.flatnonzero(surplus):  # drop the surplus ties, last ones in raster order first
            ties = np.flatnonzero(self.flat[i] == cut[i])
            keep[i, ties[len(ties) - surplus[i]:]] = False
        return keep.reshape(self.shape)

    def kth_largest(self, k: int) -> np.ndarray | None:
        """The ``k``-th largest value of every map (shape N), if it was asked for at construction."""
        return self.values.get(self.flat.shape[1] - k)


def ragged_percentiles(values: np.ndarray, counts: np.ndarray, qs) -> np.ndarray:
    """Percentiles of consecutive groups of a 1-D array (group ``i`` holds ``counts[i]`` values).

    Returns ``len(counts)×len(qs)``, each equal to ``np.percentile(group, q)`` (linear method).
    Groups have different sizes, so this is one small partial sort per group.
    """
    out = np.empty((len(counts), len(qs)), dtype=values.dtype)
    stop = np.cumsum(counts)
    for i, (a, b) in enumerate(zip(stop - counts, stop)):
        group = values[a:b]
        m = group.size
        idx = [_virtual_index(m, q) for q in qs]
        at = values_at_ranks(group, {j for lo, _ in idx for j in (lo, min(lo + 1, m - 1))})
        for j, (lo, g) in enumerate(idx):
            out[i, j] = _lerp(at[lo], at[min(lo + 1, m - 1)], g)
    return out


def percentile(maps: np.ndarray, q: float) -> np.ndarray:
    """``pct(a, q)`` of each map: NumPy's linear-interpolation percentile over all its pixels. Shape ``N``."""
    return RowRanks(maps, percentiles=(q,)).percentile(q)


def top_k_mask(maps: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest pixels of each map (exactly ``k``; raster-order ties)."""
    return RowRanks(maps, top_ks=(k,)).top_k(k)
