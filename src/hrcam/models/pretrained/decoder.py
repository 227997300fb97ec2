"""High-resolution CAMs for a frozen pretrained classifier: an expansion network (decoder).

A pretrained GAP + linear classifier (:class:`~hrcam.models.pretrained.backbones.BackboneNet`) has a head
``W`` (K×C) with many input channels (C = 1280 for EfficientNet-Lite0), so a full-resolution
copy of its feature map ``A`` would cost C·H·W floats per image (257 MB at 224 px). CAM is linear
in ``A``; keep that linearity with a rank-r factorization of the head by SVD:

    W = Σ_i s_i u_i v_iᵀ ≈ U_r · V_r,   U_r = [s_1 u_1 … s_r u_r]  (K×r),  V_r = [v_1 … v_r]ᵀ (r×C)

so ``low[c] = W[c]·A ≈ U_r[c]·(V_r·A)``. The decoder predicts the r-channel map
``A_high ≈ V_r·A`` at input resolution, and ``high[c] = U_r[c]·A_high`` gives every class's
high-res map from one decoder pass (``high_weight = U_r``). How much of ``W`` and of the
low-res CAMs rank r keeps is reported by :func:`rank_energy`.

Decoder (the FC-DenseNet decoder's role, on the backbone's stages): the backbone's skip maps at
S/16, S/8, S/4, S/2 (see :meth:`BackboneNet.features`) are reduced to ``width`` channels by 1×1
convs; starting from ``[1×1 conv(A), V_r·A]`` at the backbone's resolution, each step upsamples
bilinearly to the next skip's size, concatenates the reduced skip, and applies two 3×3
conv + ReLU layers; a last step at input resolution concatenates the normalized image and applies
two 3×3 conv + ReLU layers; the two finest steps (S/2, S) use ``width/2`` channels. A 1×1 conv gives ``r`` channels ``D``; with ``residual=True`` (default)

    A_high = upsample_bilinear(V_r·A) + D

so an untrained decoder already yields the (rank-r) low-res CAMs upsampled, and training adds
detail. With ``anchor='bilinear'`` (:func:`~hrcam.models.anchor.anchor_to_low`) the cell means of
``A_high`` are moved onto ``V_r·A`` after every step of training too, not only at the start:
``A_high = B + up(V_r·A − pool(B))``, so each class map keeps the classifier's own low-res
evidence per cell and the decoder only spreads it inside the cell (the ``localize`` recipe's
anchor of the FC-DenseNet FullModel). The reconstruction head (seed: autoencoder objective) is a 1×1 conv r → 3 on
``A_high`` (weights initialized to zero), so reconstructing the image forces ``A_high`` to carry
its structure.

The backbone is frozen: no gradients, batch norms in eval mode, so classification is identical
to the backbone's own (same logits, bit for bit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.anchor import anchor_to_low, check_anchor
from hrcam.models.base import CAMNetwork, MapOutputs
from hrcam.models.pretrained.backbones import BackboneNet, build_backbone, freeze
from hrcam.models.registry import register_model

__all__ = ["DecoderNet", "rank_factorization", "rank_energy"]


def rank_factorization(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U_r, V_r)`` with ``U_r·V_r`` the best rank-r approximation of ``weight`` (Eckart–Young).

    ``U_r`` (K×r) = left singular vectors scaled by the singular values, ``V_r`` (r×C) = right
    singular vectors (orthonormal rows). Computed in float64 and returned as float32.
    """
    k, c = weight.shape
    if not 1 <= rank <= min(k, c):
        raise ValueError(f"rank must be in 1..{min(k, c)} for a {k}×{c} head, got {rank}")
    u, s, vh = torch.linalg.svd(weight.detach().double().cpu(), full_matrices=False)
    return (u[:, :rank] * s[:rank]).float(), vh[:rank].float()


def rank_energy(weight: torch.Tensor, rank: int, features: torch.Tensor | None = None,
                classes=None) -> dict[str, float]:
    """How much of the head and of its CAMs a rank-r factorization keeps.

    Returns ``weight_rel_error = ‖W − U_rV_r‖_F / ‖W‖_F`` (= √(Σ_{i>r} s_i² / Σ s_i²)) and, when
    ``features`` (N×C×h×w) are given, ``cam_rel_error = ‖(W − U_rV_r)·A‖ / ‖W·A‖`` over all
    classes and positions, and ``cam_centered_rel_error``, the same after subtracting each
    map's spatial mean (what a normalized map shows). With ``classes`` (one class per image,
    e.g. the predicted ones) also ``class_centered_rel_error``: the centered error of just
    those maps — the ones a user looks at.
    """
    u, v = rank_factorization(weight, rank)
    w = weight.detach().double().cpu()
    approx = u.double() @ v.double()
    out = {"rank": float(rank), "weight_rel_error": float((w - approx).norm() / w.norm())}
    if features is not None:
        a = features.detach().double().cpu()
        full = torch.einsum("kc,nchw->nkhw", w, a)
        low_r = torch.einsum("kc,nchw->nkhw", approx, a)
        out["cam_rel_error"] = float((low_r - full).norm() / full.norm())
        fc = full - full.mean(dim=(2, 3), keepdim=True)
        lc = low_r - low_r.mean(dim=(2, 3), keepdim=True)
        out["cam_centered_rel_error"] = float((lc - fc).norm() / fc.norm())
        if classes is not None:
            idx = torch.arange(a.shape[0])
            cls = torch.as_tensor(classes, dtype=torch.long).reshape(-1).cpu()
            out["class_centered_rel_error"] = float((lc[idx, cls] - fc[idx, cls]).norm() / fc[idx, cls].norm())
    return out


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class DecoderNet(CAMNetwork):
    """A frozen :class:`BackboneNet` plus a trainable expansion network (see module docstring).

    ``forward_maps(x, high=True)`` → ``MapOutputs(logits, A (C×h×w), A_high (r×H×W))`` with
    ``low_weight = W`` (the backbone's head) and ``high_weight = U_r``.
    """

    has_high_res = True

    def __init__(self, backbone: BackboneNet, rank: int = 128, width: int = 32, residual: bool = True,
                 anchor: str = "none"):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.anchor = check_anchor(anchor)
        self.backbone = freeze(backbone)
        self.rank = int(rank)
        self.width = int(width)
        self.residual = bool(residual)
        u, v = rank_factorization(backbone.head.weight, rank)
        device = backbone.head.weight.device
        self.register_buffer("head_u", u.to(device))  # K×r
        self.register_buffer("head_v", v.to(device))  # r×C
        skip_channels = self._probe_skips()
        self.top = nn.Sequential(nn.Conv2d(backbone.feature_channels, width, 1), nn.ReLU(inplace=True))
        # channels per decoder step: `width` at the coarse steps, width/2 at the two finest
        # (S/2 and S), which dominate time and memory
        fine = max(1, width // 2)
        n = len(skip_channels)
        widths = [width if i < n - 1 else fine for i in range(n)]
        self.laterals = nn.ModuleList(nn.Conv2d(ch, w, 1) for ch, w in zip(skip_channels, widths))
        ins = [width + self.rank] + widths[:-1]
        self.ups = nn.ModuleList(_conv_block(cin + w, w) for cin, w in zip(ins, widths))
        last_in = (widths[-1] if n else width + self.rank) + 3
        self.final = _conv_block(last_in, fine)
        self.to_rank = nn.Conv2d(fine, self.rank, 1)
        self.reconstruction = nn.Conv2d(self.rank, 3, 1)
        if self.residual:  # start exactly at the upsampled rank-r low-res maps
            nn.init.zeros_(self.to_rank.weight)
            nn.init.zeros_(self.to_rank.bias)
        # start the reconstruction at a constant image, not at a random mix of CAM-scaled channels
        nn.init.zeros_(self.reconstruction.weight)
        self.to(device)

    def _probe_skips(self) -> list[int]:
        """Channel counts of the backbone's skip maps, lowest resolution first (one tiny pass)."""
        probe = torch.zeros(1, 3, 64, 64, device=self.backbone.head.weight.device)
        with torch.no_grad():
            _, skips = self.backbone.features(probe, skips=True)
        return [int(s.shape[1]) for s in reversed(skips)]

    def train(self, mode: bool = True):
        """Train the decoder only; the frozen backbone (and its batch norms) stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def class_names(self) -> list[str]:
        return self.backbone.class_names

    @property
    def low_weight(self) -> torch.Tensor:
        return self.backbone.head.weight

    @property
    def high_weight(self) -> torch.Tensor:
        return self.head_u

    def decoder_parameters(self):
        """The trainable parameters (everything but the frozen backbone)."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]

    # -- forward --------------------------------------------------------------------------
    def _expand(self, x: torch.Tensor, a: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """``A_high`` (N×r×H×W) from the image, the backbone's ``A`` and its skips."""
        projected = torch.einsum("rc,nchw->nrhw", self.head_v, a)  # V_r·A
        h = torch.cat([self.top(a), projected], dim=1)
        for skip, lateral, block in zip(reversed(skips), self.laterals, self.ups):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, lateral(skip)], dim=1))
        size = x.shape[-2:]
        h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        h = self.final(torch.cat([h, self.backbone.normalize(x)], dim=1))
        # 16 output channels at a time into one preallocated tensor: the convolution's
        # temporaries and the upsampled residual never exist at r×H×W (the memory peak)
        out = h.new_empty(h.shape[0], self.rank, *size)
        for i in range(0, self.rank, 16):
            part = slice(i, i + 16)
            chunk = F.conv2d(h, self.to_rank.weight[part], self.to_rank.bias[part])
            if self.residual:
                chunk = chunk + F.interpolate(projected[:, part], size=size, mode="bilinear", align_corners=False)
            if self.anchor == "bilinear":
                chunk = anchor_to_low(chunk, projected[:, part])
            out[:, part] = chunk
        return out

    def forward_maps(self, x: torch.Tensor, high: bool = False) -> MapOutputs:
        if not high:
            return self.backbone.forward_maps(x)
        a, skips = self.backbone.features(x, skips=True)
        logits = self.backbone.head(a.mean(dim=(2, 3)))
        return MapOutputs(logits=logits, low_features=a, high_features=self._expand(x, a, skips))

    def reconstruct_from(self, high_features: torch.Tensor) -> torch.Tensor:
        """The reconstructed image (N×3×H×W, in [0,1] units) from ``A_high``."""
        return self.reconstruction(high_features)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct_from(self.forward_maps(x, high=True).high_features)


def peak_activation_mb(net: CAMNetwork, x: torch.Tensor, high: bool = True) -> float:
    """Peak memory (MB per image) of the tensors allocated by one inference pass of ``net``.

    Measured with PyTorch's profiler: the running sum of allocation/free events during
    ``forward_maps(x, high)`` under ``torch.no_grad()``, its maximum divided by the batch size.
    Parameters are not counted (they exist before the pass); the returned outputs are.
    """
    from torch.profiler import ProfilerActivity, profile

    net.eval()
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net.forward_maps(x, high=high)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20 / x.shape[0]


def _decoder_fields(net: DecoderNet, objective: str | None = None) -> dict:
    fields = {"backbone": net.backbone.name,
              "arch": {"rank": net.rank, "width": net.width, "residual": net.residual, "anchor": net.anchor},
              "class_names": list(net.class_names)}
    if objective:
        fields["objective"] = objective
    return fields


@register_model("decoder", fields=_decoder_fields, family="pretrained")
def _build_decoder(meta: dict) -> DecoderNet:
    arch = meta.get("arch") or {}
    backbone = build_backbone(meta["backbone"], pretrained=False, num_classes=int(meta["num_classes"]),
                              class_names=meta.get("class_names"))
    return DecoderNet(backbone, rank=int(arch.get("rank", 128)), width=int(arch.get("width", 32)),
                      residual=bool(arch.get("residual", True)), anchor=str(arch.get("anchor", "none")))
