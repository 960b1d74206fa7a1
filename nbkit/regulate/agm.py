"""AGM (Li et al., ICCV 2023): adaptive gradient modulation from Shapley-style unimodal responses."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, check_number
from .base import _EncoderRegulator, _floats, _temp_eval


def agm_coefficients(scores: dict[str, float], running: dict[str, float], alpha: float, cap: float = 7.0) -> dict[str, float]:
    """AGM's coefficient per modality from its current score s_m (mean -log p_y of its
    Shapley response, lower = stronger) and the running average of scores:
    ratio_m = exp(M/(M-1) (mean s - s_m))  (two modalities: exp(s_other - s_m), the original
    AGM code), target_m = the same of the running scores,
    coeff_m = exp(alpha * min(target_m - ratio_m, cap)): a modality further ahead than it
    usually is gets < 1, one further behind gets > 1. (BalanceBenchmark's M-modality
    rewrite uses exp(M/(M-1)(s_m - mean s)), the opposite sign; we follow the original.)"""
    alpha = check_number("alpha", alpha, 0.0)
    M = len(scores)
    if M < 2 or set(scores) != set(running):
        raise ValueError(f"scores and running must name the same >= 2 modalities, got {list(scores)} and {list(running)}")
    mean_s = sum(scores.values()) / M
    mean_r = sum(running.values()) / M
    out = {}
    for m in scores:
        ratio = math.exp(M / (M - 1) * (mean_s - scores[m]))
        target = math.exp(M / (M - 1) * (mean_r - running[m]))
        out[m] = math.exp(alpha * min(target - ratio, cap))
    return out


class AGM(_EncoderRegulator):
    """AGM (Li et al., ICCV 2023), following GeWu-Lab/BalanceBenchmark's AGM trainer.

    Shapley responses phi_m from zero-padded passes (absent modalities masked; no grad):
    phi_m = sum_{S not containing m} |S|!(M-|S|-1)!/M! (f(S + m) - f(S)), f(empty) = all masked.
    score_m = mean_i -log softmax(phi_m)_i[y_i]; coefficients by `agm_coefficients` against
    the running average of scores (sign of the original AGM code, see there); every
    encoder weight gradient is multiplied by its coefficient (biases untouched, as in
    BalanceBenchmark). Ours: the coefficient scales the whole encoder weight gradient (the
    original hooks scale only the part that flows through the fused output).
    """

    name = "agm"

    def __init__(self, alpha: float = 0.1, start_epoch: int = 0, modalities=None, seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = check_number("alpha", alpha, 0.0)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.iteration = 0
        self.running: dict[str, float] = {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        if tuple(self.modalities) != tuple(model.encoders.keys()):
            raise ValueError("AGM computes Shapley values over all of the model's modalities; leave modalities=None")
        self.running = {m: 0.0 for m in self.modalities}
        self.iteration = 0

    @torch.no_grad()
    def shapley_logits(self, batch) -> dict[str, Tensor]:
        from itertools import combinations

        mods = self.modalities
        M = len(mods)
        cache: dict[frozenset, Tensor] = {}

        def f(S: frozenset) -> Tensor:
            if S not in cache:
                keep = torch.tensor([m in S for m in batch.modalities], device=batch.present.device)
                x = {m: (t if m in S else torch.zeros_like(t)) for m, t in batch.x.items()}
                cache[S] = self.model(batch.with_x(x, present=batch.present & keep[None, :])).logits.float()
            return cache[S]

        with _temp_eval([self.model]):
            phi = {}
            for m in mods:
                others = [k for k in mods if k != m]
                acc = 0.0
                for r in range(M):
                    w = math.factorial(r) * math.factorial(M - r - 1) / math.factorial(M)
                    for S in combinations(others, r):
                        S = frozenset(S)
                        acc = acc + w * (f(S | {m}) - f(S))
                phi[m] = acc
        return phi

    def after_backward(self, batch, out, terms):
        phi = self.shapley_logits(batch)
        idx = torch.arange(len(batch.y), device=batch.y.device)
        sc = torch.stack([-torch.log(F.softmax(phi[m], 1)[idx, batch.y].clamp_min(1e-8)).mean()
                          for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, sc))
        coeff = agm_coefficients(scores, self.running, self.alpha)
        self.iteration += 1
        it = self.iteration
        self.running = {m: self.running[m] * (it - 1) / it + scores[m] / it for m in self.modalities}
        d = {f"score/{m}": s for m, s in scores.items()}
        d.update({f"coeff/{m}": c for m, c in coeff.items()})
        d.update(self.grad_norms("gnorm_raw"))
        if self.epoch >= self.start_epoch:
            for m in self.modalities:
                if coeff[m] != 1.0:
                    for p in self.params[m]:
                        if p.grad is not None and p.grad.ndim >= 2:
                            p.grad.mul_(coeff[m])
        d.update(self.grad_norms())
        return _floats(d)
