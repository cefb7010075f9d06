"""The training loss and the validation scores.

The loss of a window is the KL divergence of its target from the predicted map (both
normalized to sum 1, eps = 1e-7), optionally minus a multiple of their correlation (CC),
computed in fp32 (``loss_per_sample``). TASED-Net's recipe instead normalizes prediction
and target over the whole mini-batch (``kld-batch``, eps = Python's float epsilon): each
window's term is its share of the mini-batch's KL divergence, and a step's loss is their
sum (``summed``). Validation scores each window's map as predict writes it
(post-processed by the model's family, at the ground truth's size) with ``salcli.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from salcli import metrics as M
from salcli.models.vinet_procedure import postprocess as vinet_postprocess

KLD_EPS = 1e-7  # the training loss' epsilon (the published recipe's)
BATCH_KLD_EPS = float(np.finfo(float).eps)  # 2.22e-16: TASED-Net's loss.py epsilon
VAL_METRICS = ("cc", "sim", "kld", "nss")  # scored on every validation window


def kld_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = KLD_EPS) -> torch.Tensor:
    """KL(P, Q) = sum Q log(eps + Q / (P + eps)), P and Q normalized to sum 1: (B,).

    ``pred`` P and ``target`` Q are (B, H, W); computed in fp32."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p / p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return (q * torch.log(eps + q / (p + eps))).sum(dim=1)


def batch_kld_terms(
    pred: torch.Tensor, target: torch.Tensor, eps: float = BATCH_KLD_EPS, group: int | None = None
) -> torch.Tensor:
    """TASED-Net's KL divergence, sum Q log(eps + Q / (P + eps)) with P and Q each divided
    by their sum over a whole group of windows (the mini-batch; ``group`` windows at a
    time, None: all of them): each window's part, (B,), in fp32. A group's parts sum to
    its KL divergence."""
    p, q = pred.float().flatten(1), target.float().flatten(1)
    n = p.shape[0] if group is None else group
    out = []
    for i in range(0, p.shape[0], max(1, n)):
        pg, qg = p[i : i + n], q[i : i + n]
        pg = pg / pg.sum().clamp_min(torch.finfo(torch.float32).tiny)
        qg = qg / qg.sum().clamp_min(torch.finfo(torch.float32).tiny)
        out.append((qg * torch.log(eps + qg / (pg + eps))).sum(dim=1))
    return torch.cat(out)


def summed(terms: Sequence[tuple[str, float]]) -> bool:
    """Whether a step's loss is the sum of its windows' terms (``kld-batch``: the sum of
    its mini-batches' KL divergences) rather than their mean."""
    return any(name == "kld-batch" for name, _ in terms)


def cc_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each predicted map with its target: (B,)."""
    p = pred.float().flatten(1)
    q = target.float().flatten(1)
    p = p - p.mean(dim=1, keepdim=True)
    q = q - q.mean(dim=1, keepdim=True)
    den = torch.sqrt((p * p).sum(dim=1) * (q * q).sum(dim=1)).clamp_min(1e-12)
    return (p * q).sum(dim=1) / den


def loss_per_sample(
    pred: torch.Tensor,
    target: torch.Tensor,
    terms: Sequence[tuple[str, float]],
    group: int | None = None,
) -> torch.Tensor:
    """The training loss of each sample, (B,): sum of w * KLD and -w * CC, or w times the
    sample's part of its group's ``kld-batch`` (groups of ``group`` samples)."""
    out = torch.zeros(pred.shape[0], device=pred.device)
    for name, w in terms:
        if name == "kld":
            out = out + w * kld_loss(pred, target)
        elif name == "cc":
            out = out - w * cc_score(pred, target)
        else:
            out = out + w * batch_kld_terms(pred, target, group=group)
    return out


def window_scores(
    loss: float,
    saliency: np.ndarray,
    density: np.ndarray,
    fixations: np.ndarray,
    postprocess: Callable[[np.ndarray, int, int], np.ndarray] = vinet_postprocess,
) -> list[float]:
    """[loss, *VAL_METRICS] of one validation window: ``saliency`` (h, w) is the model's
    map, scored as predict writes it (``postprocess``, the family's, at the ground
    truth's size)."""
    p = postprocess(saliency, *density.shape)
    return [
        float(loss),
        M.cc(p, density),
        M.sim(p, density),
        M.kld(p, density),
        M.nss(p, fixations),
    ]
