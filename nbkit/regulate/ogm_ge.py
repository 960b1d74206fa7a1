"""OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation + generalisation enhancement."""
from __future__ import annotations

import math

import torch

from .._checks import check_int, check_number
from .base import _EPS, _EncoderRegulator, _floats


def ogm_coefficients(scores: dict[str, float], alpha: float) -> dict[str, float]:
    """OGM-GE's per-modality gradient coefficient from summed true-class softmax scores.

    ratio_m = s_m / mean_{k != m} s_k (with two modalities exactly the public code's
    score_v / score_a); a modality with ratio_m > 1 gets 1 - tanh(alpha * relu(ratio_m)),
    every other modality 1.
    """
    alpha = check_number("alpha", alpha, 0.0)
    if len(scores) < 2:
        raise ValueError(f"OGM-GE needs scores for >= 2 modalities, got {list(scores)}")
    out = {}
    for m, s in scores.items():
        others = [float(v) for k, v in scores.items() if k != m]
        ratio = float(s) / max(sum(others) / len(others), _EPS)
        out[m] = 1.0 - math.tanh(alpha * max(ratio, 0.0)) if ratio > 1 else 1.0
    return out


class OGMGE(_EncoderRegulator):
    """OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation + generalisation
    enhancement, as in the public code (GeWu-Lab/OGM-GE_CVPR2022):

        s_m = sum_i softmax(logits_m)_i[y_i]           (unimodal logits: split fused head by default)
        coeff_d = 1 - tanh(alpha * relu(s_d / s_w))     for the dominant modality (ratio > 1)
        g_m <- coeff_m * g_m + N(0, std(g_m))           (GE noise, on weight tensors, every encoder)

    ``start_epoch``/``end_epoch``: the modulation window (paper ~10..; ours 0 for short runs).
    """

    name = "ogm_ge"

    def __init__(self, alpha: float = 0.5, ge: bool = True, start_epoch: int = 0, end_epoch: int | None = None,
                 modalities=None, source: str = "split", seed: int = 0):
        super().__init__(modalities, source, seed)
        self.alpha = check_number("alpha", alpha, 0.0)
        self.ge = bool(ge)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.end_epoch = check_int("end_epoch", end_epoch, 0, none_ok=True)

    def active(self) -> bool:
        return self.start_epoch <= self.epoch and (self.end_epoch is None or self.epoch <= self.end_epoch)

    def after_backward(self, batch, out, terms):
        probs = self.true_class_probs(out, batch)
        sums = torch.stack([probs[m].sum() for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, sums))
        coeff = ogm_coefficients(scores, self.alpha)
        d = {f"score/{m}": s for m, s in scores.items()}
        d.update({f"coeff/{m}": c for m, c in coeff.items()})
        d.update(self.grad_norms("gnorm_raw"))
        on = self.active()
        d["active"] = float(on)
        if on:
            for m in self.modalities:
                for p in self.params[m]:
                    if p.grad is None:
                        continue
                    if coeff[m] != 1.0:
                        p.grad.mul_(coeff[m])
                    if self.ge and p.grad.ndim >= 2:
                        std = float(p.grad.std()) + 1e-8
                        p.grad.add_(torch.randn(p.grad.shape, generator=self.gen, device=p.grad.device,
                                                dtype=p.grad.dtype) * std)
        d.update(self.grad_norms())
        return _floats(d)
