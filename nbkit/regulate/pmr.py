"""PMR (Fan et al., CVPR 2023): prototypical modality rebalance.

Method notes: docs/methods/balance_baselines.md (section PMR).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, check_number
from .base import _EPS, _EncoderRegulator, _floats


def pmr_coefficients(scores: dict[str, float], rule: str = "public") -> dict[str, float]:
    """Which modality's prototype loss is switched on, from the summed prototype scores
    s_m = sum_i softmax(-||h_m,i - c_k||)_i[y_i] (the term is then weighted by alpha).

    ``rule="public"`` (both public codes: fanyunfeng-bit/Modal-Imbalance-PMR
    main_Prototype_grad.py, GeWu-Lab/BalanceBenchmark PMR trainer): with two modalities the
    one with the strictly lower score gets 1, the other 0; an exact tie gives 0 to both. With
    more modalities (ours; the original defines two and BalanceBenchmark switches to an
    OGM-like rule) every modality scoring below the best gets 1.

    ``rule="clipped"`` (ours, nbkit's earlier rule, kept as a named option):
    clip(s_max / s_m - 1, 0, 1), which is ~0 when the scores are close.
    """
    rule = check_choice("rule", rule, ("public", "clipped"))
    if not isinstance(scores, dict) or len(scores) < 2:
        raise ValueError(f"PMR needs scores for >= 2 modalities, got {scores!r}")
    s = {m: check_number(f"scores[{m!r}]", v, 0.0) for m, v in scores.items()}
    smax = max(s.values())
    if rule == "public":
        return {m: 1.0 if v < smax else 0.0 for m, v in s.items()}
    return {m: min(max(smax / max(v, _EPS) - 1.0, 0.0), 1.0) for m, v in s.items()}


class PMR(_EncoderRegulator):
    """PMR (Fan et al., CVPR 2023), following fanyunfeng-bit/Modal-Imbalance-PMR
    (main_Prototype_grad.py) and BalanceBenchmark's PMR trainer, which agree on the step:

        prototype logits  -||h_m - c_k||                  (Euclidean, not squared: both codes)
        s_m = sum_i softmax(prototype logits_m)_i[y_i]    (summed over the batch)
        loss += alpha * CE(prototype logits_m, y)         for the weaker modality (`pmr_coefficients`)

    inside the modulation window ``start_epoch`` .. ``end_epoch`` (reference command-line
    defaults 0 .. 100). ``alpha = 0.6``: BalanceBenchmark's configured value (the original's
    command-line default is 1.0; its CREMA-D scripts use 2.0). ``rule="clipped"`` is our old
    rule, see `pmr_coefficients`; ``squared=True`` (ours) uses -||h - c||^2.

    Prototypes (ours): the class means of the encoder features seen during the previous
    epoch (detached), mixed with ``momentum`` 0.5 (BalanceBenchmark's value; the original's
    default 0.2) into the older ones; in the first epoch, the running class means so far. Both
    codes instead recompute them at each epoch start with an extra eval-mode pass over the
    first tenth of the training batches; nbkit's Trainer does not hand regulators the data set.
    """

    name = "pmr"

    def __init__(self, alpha: float = 0.6, rule: str = "public", momentum: float = 0.5, start_epoch: int = 0,
                 end_epoch: int | None = 100, modalities=None, squared: bool = False, seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = check_number("alpha", alpha, 0.0)
        self.rule = check_choice("rule", rule, ("public", "clipped"))
        self.momentum = check_number("momentum", momentum, 0.0, 1.0)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.end_epoch = check_int("end_epoch", end_epoch, 0, none_ok=True)
        self.squared = bool(squared)
        self.weights = {"pmr": self.alpha}
        self.proto: dict[str, Tensor] = {}
        self._sum: dict[str, Tensor] = {}
        self._count: Tensor | None = None
        self._diag: dict = {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        self.n_classes = int(model.n_classes)
        self.proto, self._sum, self._count = {}, {}, None

    def active(self) -> bool:
        return self.start_epoch <= self.epoch and (self.end_epoch is None or self.epoch <= self.end_epoch)

    def _accumulate(self, out, batch):
        y = batch.y
        C = self.n_classes
        onehot = F.one_hot(y, C).float()
        if self._count is None:
            self._count = torch.zeros(C, device=y.device)
        self._count += onehot.sum(0)
        for m in self.modalities:
            h = out.features[m].detach().float()
            self._sum[m] = self._sum.get(m, torch.zeros(C, h.shape[1], device=h.device)) + onehot.t() @ h

    def current_prototypes(self) -> dict[str, Tensor]:
        if self.proto:
            return self.proto
        cnt = self._count.clamp_min(1.0)[:, None]
        return {m: s / cnt for m, s in self._sum.items()}

    def proto_logits(self, h: Tensor, proto: Tensor) -> Tensor:
        d = torch.cdist(h.float(), proto.float(), p=2)
        return -(d ** 2) if self.squared else -d

    def extra_terms(self, batch, out):
        missing = [m for m in self.modalities if m not in out.features]
        if missing:
            raise ValueError(f"PMR needs encoder features in Output.features for {missing}")
        self._accumulate(out, batch)
        proto = self.current_prototypes()
        idx = torch.arange(len(batch.y), device=batch.y.device)
        logits = {m: self.proto_logits(out.features[m], proto[m]) for m in self.modalities}
        with torch.no_grad():
            s = torch.stack([F.softmax(logits[m].detach(), 1)[idx, batch.y].sum() for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, s))
        coef = pmr_coefficients(scores, self.rule)
        if not self.active():
            coef = {m: 0.0 for m in self.modalities}
        self._diag = {**{f"score/{m}": v for m, v in scores.items()},
                      **{f"coef/{m}": self.alpha * v for m, v in coef.items()}}
        term = sum(coef[m] * F.cross_entropy(logits[m], batch.y) for m in self.modalities if coef[m] > 0)
        if not isinstance(term, Tensor):
            return {}          # nothing to add: leaves the loss (and gradients) untouched
        return {"pmr": term}

    def after_backward(self, batch, out, terms):
        d = dict(self._diag)
        d.update(self.grad_norms())
        return _floats(d)

    def on_epoch_end(self, epoch):
        if self._count is not None and self._count.sum() > 0:
            new = {m: s / self._count.clamp_min(1.0)[:, None] for m, s in self._sum.items()}
            seen = (self._count > 0)[:, None]
            if self.proto:
                new = {m: torch.where(seen, (1 - self.momentum) * new[m] + self.momentum * self.proto[m], self.proto[m])
                       for m in new}
            self.proto = new
        self._sum, self._count = {}, None
        return {}
