"""The training loss and the validation scores.

The loss of a window is the KL divergence of its target from the predicted map (both
normalized to sum 1, eps = 1e-7), optionally minus a multiple of their correlation (CC),
computed in fp32 (``loss_per_sample``). Validation scores each window's map as predict
writes it (post-processed at the ground truth's size) with ``salcli.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from salcli import metrics as M
from salcli.models.vinet_procedure import postprocess

KLD_EPS = 1e-7  # the training loss' epsilon (the published recipe's)
VAL_METRICS = ("cc", "sim", "kld", "nss")  # scored on every validation window


def kld_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = KLD_EPS) -> torch.Tensor:
    """KL(P, Q) = sum Q log(eps + Q / (P + eps)), P and Q normalized to sum 1: (B,).

    ``pred`` P and ``target`` Q are (B, H, W); computed in fp32."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p / p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return (q * torch.log(eps + q / (p + eps))).sum(dim=1)


def cc_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each predicted map with its target: (B,)."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p - p.mean(dim=1, keepdim=True)
    q = q - q.mean(dim=1, keepdim=True)
    den = torch.sqrt((p * p).sum(dim=1) * (q * q).sum(dim=1)).clamp_min(1e-12)
    return (p * q).sum(dim=1) / den


def loss_per_sample(
    pred: torch.Tensor, target: torch.Tensor, terms: Sequence[tuple[str, float]]
) -> torch.Tensor:
    """The training loss of each sample, (B,): sum of w * KLD and -w * CC."""
    out = torch.zeros(pred.shape[0], device=pred.device)
    for name, w in terms:
        out = out + (w * kld_loss(pred, target) if name == "kld" else -w * cc_score(pred, target))
    return out


def window_scores(
    loss: float, saliency: np.ndarray, density: np.ndarray, fixations: np.ndarray
) -> list[float]:
    """[loss, *VAL_METRICS] of one validation window: ``saliency`` (h, w) is the model's
    map, scored as predict writes it (post-processed at the ground truth's size)."""
    p = postprocess(saliency, *density.shape)
    return [
        float(loss),
        M.cc(p, density),
        M.sim(p, density),
        M.kld(p, density),
        M.nss(p, fixations),
    ]
