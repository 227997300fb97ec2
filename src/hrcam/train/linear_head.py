"""Fine-tune only the linear head of a frozen pretrained backbone (a new HalfModel on new classes).

The backbone's pooled features ``f = mean_{i,j} A(x)`` are computed once per training image (one
pass over the training loader, frozen network, no gradients); the head ``logits = W f + b`` is
then fitted by mini-batch Adam on those cached features, with cross-entropy and an L2 penalty ``weight_decay · ‖W‖²``. Because the backbone never changes, the
cache is exact, and training the head costs almost nothing beyond one feature pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hrcam.models.base import cpu_channels_last
from hrcam.models.pretrained.backbones import BackboneNet

__all__ = ["pooled_features", "fit_linear_head"]


@torch.no_grad()
def pooled_features(net: BackboneNet, loader, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features N×C, labels N)``: the backbone's globally pooled feature maps for a loader
    (on the CPU from channels-last input: faster, same math to float tolerance)."""
    net.eval()
    device = net.head.weight.device
    feats, labels = [], []
    for x, y in tqdm(loader, desc="features", disable=not progress, leave=False):
        feats.append(net.features(cpu_channels_last(x.to(device))).mean(dim=(2, 3)).cpu())
        labels.append(torch.as_tensor(y).cpu())
    if not feats:
        raise ValueError("the loader yielded no images")
    return torch.cat(feats), torch.cat(labels).long()


def fit_linear_head(backbone_net: BackboneNet, datamodule, epochs: int = 100, *, lr: float = 1e-2,
                    weight_decay: float = 1e-4, batch_size: int = 256, seed: int = 0,
                    progress: bool = True) -> dict:
    """Replace ``backbone_net``'s head by one trained on ``datamodule``'s classes (in place).

    ``datamodule`` provides ``train_dataloader()``, ``num_classes``, ``classes`` and optionally
    ``val_dataloader()`` (e.g. :class:`hrcam.train.datamodule.FolderDataModule`; its training
    augmentation, if on, gives one augmented view per image). The backbone stays frozen (its
    parameters bit-identical). Returns ``{"train_acc", "val_acc" (None without validation data),
    "epochs"}``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    feats, labels = pooled_features(backbone_net, datamodule.train_dataloader(), progress)
    num_classes = int(getattr(datamodule, "num_classes", int(labels.max()) + 1))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    names = list(getattr(datamodule, "classes", [])) or None
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(feats.shape[1], num_classes)
    with torch.no_grad():  # seeded init, independent of the global RNG
        head.weight.normal_(0.0, 0.01, generator=gen)
        head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    n = feats.shape[0]
    for _ in tqdm(range(epochs), desc="linear head", disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(head(feats[idx]), labels[idx]) + weight_decay * head.weight.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    backbone_net.replace_head(num_classes, names)
    with torch.no_grad():
        backbone_net.head.weight.copy_(head.weight)
        backbone_net.head.bias.copy_(head.bias)
        train_acc = float((head(feats).argmax(1) == labels).float().mean())
    val_acc = None
    val_loader = datamodule.val_dataloader() if hasattr(datamodule, "val_dataloader") else None
    if val_loader:
        vf, vl = pooled_features(backbone_net, val_loader, progress)
        with torch.no_grad():
            val_acc = float((backbone_net.head(vf.to(backbone_net.head.weight.device)).argmax(1).cpu() == vl)
                            .float().mean())
    backbone_net.eval()
    return {"train_acc": train_acc, "val_acc": val_acc, "epochs": epochs}
