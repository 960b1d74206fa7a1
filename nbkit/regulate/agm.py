"""AGM (Li et al., ICCV 2023): adaptive gradient modulation from Shapley-style unimodal responses.

Method notes: docs/methods/balance_baselines.md (section AGM).
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, check_number
from ..nn import eval_mode
from .base import _EncoderRegulator, _floats

RESPONSES = ("original", "shapley", "balancebenchmark")


def agm_coefficients(scores: dict[str, float], running: dict[str, float], alpha: float,
                     cap: float = 10.0) -> dict[str, float]:
    """AGM's coefficient per modality from its current score s_m (mean -log p_y of its
    response, lower = stronger) and the running average r_m of its scores:

        ratio_m  = exp(M/(M-1) (mean_k s_k - s_m))     two modalities: exp(s_other - s_m)
        target_m = exp(M/(M-1) (mean_k r_k - r_m))
        coeff_m  = exp(alpha * min(target_m - ratio_m, cap))

    With two modalities this is the original code (Lingy12/AGM_ICCV2023 run/CREMAD_main.py:
    ratio_a = exp(score_v - score_a), optimal_ratio_a = exp(train_score_v - train_score_a),
    cap 10). A modality further ahead than it usually is gets < 1, one further behind > 1.
    The M/(M-1) form for more modalities is BalanceBenchmark's, which however flips the sign
    of the exponent and caps at 7; we keep the original's sign (``cap=7`` gives its cap)."""
    alpha = check_number("alpha", alpha, 0.0)
    cap = check_number("cap", cap, finite=False)
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


def agm_responses(f: Callable[[frozenset], Tensor], modalities: Sequence[str], full: Tensor,
                  response: str = "original") -> dict[str, Tensor]:
    """Each modality's response phi_m = sum_{S not containing m} |S|!(M-|S|-1)!/M! (f(S+m) - f(S)),
    from the outputs f(S) of passes where the modalities outside S are zero inputs, and
    ``full`` = f(all modalities) (the training forward).

    ``response`` says what the empty coalition is worth:
    - ``"original"`` (AGM's code): 0. With two modalities phi_a = (f(a,v) - f(0,v) + f(a,0)) / 2,
      and the responses add up to the full output;
    - ``"shapley"`` (ours): the all-zero-input pass, so phi are the exact Shapley values of the
      zero-padded model and add up to f(all) - f(empty);
    - ``"balancebenchmark"``: the S = empty terms are dropped (BalanceBenchmark's AGM trainer).
    """
    response = check_choice("response", response, RESPONSES)
    mods = list(modalities)
    M = len(mods)
    full_set = frozenset(mods)

    def out(S: frozenset):
        return full if S == full_set else f(S)

    phi = {}
    for m in mods:
        others = [k for k in mods if k != m]
        acc = 0.0
        for r in range(M):
            w = math.factorial(r) * math.factorial(M - r - 1) / math.factorial(M)
            for S in combinations(others, r):
                S = frozenset(S)
                if not S and response == "balancebenchmark":
                    continue
                base = 0.0 if (not S and response == "original") else out(S)
                acc = acc + w * (out(S | {m}) - base)
        phi[m] = acc
    return phi


class AGM(_EncoderRegulator):
    """AGM (Li et al., ICCV 2023) as in the original code (Lingy12/AGM_ICCV2023,
    run/CREMAD_main.py and model/CREMAD_net.py; the only public copy found). One step:

    1. responses phi_m (`agm_responses`, ``response="original"``) from passes with the other
       modalities' INPUTS set to zero, the model in eval mode (reference code);
    2. score_m = mean_i -log softmax(phi_m)_i[y_i] (p floored at 1e-8), coefficients by
       `agm_coefficients` (cap 10) against the running average of the scores over all steps
       so far, which is then updated (reference code);
    3. ``apply="hooks"`` (reference code): the fused output is rebuilt as sum_m phi_m, each
       phi_m passing the gradient back scaled by coeff_m, and the task loss is backpropagated
       through that: the gradient reaches the encoders AND the fused head through the padded
       passes, not as a plain multiple of the encoder gradient;
    4. ``clip=1.0`` (reference code): if any entry of the fused head's weight gradient lies
       outside [-clip, clip], the global gradient norm of the model is clipped to ``clip``
       (BalanceBenchmark: 5).

    Modulation in epochs ``start_epoch`` .. ``end_epoch`` (0 .. 19: the original's 1-based
    window 0 .. 20); outside it the coefficients are 1 (ours: the original keeps applying the
    last coefficients after its window, since it stops updating its hooks' scales).
    ``alpha = 0.1``: BalanceBenchmark's configured value (ours to adopt: the original's
    command line defaults to 1.0 and it publishes no CREMA-D value). The original trains on
    the fused cross-entropy alone; other loss terms (auxiliary heads) pass unmodulated.

    Named departures (ours): ``response="shapley"`` or ``"balancebenchmark"`` (see
    `agm_responses`); ``apply="encoders"``: multiply each encoder's weight gradients (ndim
    >= 2) by its coefficient after a plain backward (BalanceBenchmark's way, nbkit's earlier
    one); ``cap``; ``clip=None``.
    """

    name = "agm"

    def __init__(self, alpha: float = 0.1, cap: float = 10.0, response: str = "original", apply: str = "hooks",
                 clip: float | None = 1.0, start_epoch: int = 0, end_epoch: int | None = 19, modalities=None,
                 seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = check_number("alpha", alpha, 0.0)
        self.cap = check_number("cap", cap, finite=False)
        self.response = check_choice("response", response, RESPONSES)
        self.apply = check_choice("apply", apply, ("hooks", "encoders"))
        self.clip = check_number("clip", clip, 0.0, lo_open=True, none_ok=True)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.end_epoch = check_int("end_epoch", end_epoch, 0, none_ok=True)
        self.iteration = 0
        self.running: dict[str, float] = {}
        self._diag: dict = {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        if tuple(self.modalities) != tuple(model.encoders.keys()):
            raise ValueError("AGM computes Shapley values over all of the model's modalities; leave modalities=None")
        if self.clip is not None and not isinstance(getattr(getattr(model, "head", None), "weight", None), torch.Tensor):
            raise ValueError(f"AGM(clip={self.clip:g}) tests the fused head's weight gradient (model.head.weight), "
                             f"which {type(model).__name__} does not have; use clip=None")
        self.running = {m: 0.0 for m in self.modalities}
        self.iteration = 0

    def active(self) -> bool:
        return self.start_epoch <= self.epoch and (self.end_epoch is None or self.epoch <= self.end_epoch)

    def _loss_weights(self) -> dict[str, float]:
        if self.trainer is not None and hasattr(self.trainer, "loss_weights"):
            return self.trainer.loss_weights()
        return {**self.model.loss_weights(), **self.weights}

    def responses(self, batch, full: Tensor) -> dict[str, Tensor]:
        """phi_m per modality (`agm_responses`), with the graph when grad is enabled."""
        cache: dict[frozenset, Tensor] = {}

        def f(S: frozenset) -> Tensor:
            if S not in cache:
                x = {m: (t if m in S else torch.zeros_like(t)) for m, t in batch.x.items()}
                cache[S] = self.model(batch.with_x(x)).logits.float()
            return cache[S]

        with eval_mode(self.model):
            return agm_responses(f, self.modalities, full.float(), self.response)

    @torch.no_grad()
    def shapley_logits(self, batch) -> dict[str, Tensor]:
        """The responses of a batch, without gradient (the model's own forward as f(all))."""
        full = self.model(batch).logits
        return self.responses(batch, full)

    def backward(self, loss, terms, batch, out):
        mods = self.modalities
        on = self.active()
        hooks = on and self.apply == "hooks"
        with torch.set_grad_enabled(hooks):
            phi = self.responses(batch, out.logits if hooks else out.logits.detach())
        idx = torch.arange(len(batch.y), device=batch.y.device)
        with torch.no_grad():
            sc = torch.stack([-torch.log(F.softmax(phi[m].detach(), 1)[idx, batch.y].clamp_min(1e-8)).mean()
                              for m in mods]).tolist()
        scores = dict(zip(mods, sc))
        coeff = agm_coefficients(scores, self.running, self.alpha, self.cap)
        self.iteration += 1
        it = self.iteration
        self.running = {m: self.running[m] * (it - 1) / it + scores[m] / it for m in mods}
        self._coeff = coeff if on else {m: 1.0 for m in mods}
        self._diag = {**{f"score/{m}": s for m, s in scores.items()}, **{f"coeff/{m}": c for m, c in coeff.items()},
                      **{f"running/{m}": r for m, r in self.running.items()}, "active": float(on)}
        if not hooks or all(c == 1.0 for c in coeff.values()):
            return False                       # every coefficient 1: the hooks change nothing
        if "task" not in terms:
            raise KeyError("AGM(apply='hooks') needs the fused loss term 'task' from model.loss_terms")
        w = self._loss_weights()
        g, = torch.autograd.grad(terms["task"] * w.get("task", 1.0), out.logits, retain_graph=True)
        modulated = sum(coeff[m] * phi[m] for m in mods)       # value: the responses' sum; gradient: scaled
        surrogate = (g.detach().float() * modulated).sum()
        for k, v in terms.items():
            if k != "task" and w.get(k, 1.0) != 0:
                surrogate = surrogate + v * w.get(k, 1.0)
        surrogate.backward()
        return True

    def after_backward(self, batch, out, terms):
        d = dict(self._diag)
        d.update(self.grad_norms("gnorm_raw"))
        if self.apply == "encoders" and self.active():
            for m in self.modalities:
                if self._coeff[m] != 1.0:
                    for p in self.params[m]:
                        if p.grad is not None and p.grad.ndim >= 2:
                            p.grad.mul_(self._coeff[m])
        clipped = 0.0
        if self.clip is not None:
            gw = self.model.head.weight.grad
            if gw is not None and bool((gw.max() > self.clip) | (gw.min() < -self.clip)):
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], self.clip)
                clipped = 1.0
        d["clipped"] = clipped
        d.update(self.grad_norms())
        return _floats(d)
