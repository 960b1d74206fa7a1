"""PMR (Fan et al., CVPR 2023): prototypical modality rebalance."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, check_number
from .base import _EPS, _EncoderRegulator, _floats


class PMR(_EncoderRegulator):
    """PMR (Fan et al., CVPR 2023): prototypical modal rebalance, after BalanceBenchmark.

    Prototype logits -||h_m - c_k|| (Euclidean distance as in the code; the spec writes the
    square), s_m = sum_i softmax(proto logits)_i[y_i]; the weaker modality gets the extra
    loss alpha * clip(s_max/s_m - 1, 0, 1) * CE(proto logits_m, y) (with two modalities the
    public rule). Ours: prototypes are the class means of the encoder features seen during
    the previous epoch (detached), mixed with momentum 0.5 into the older ones; in the first
    epoch, the running class means so far. (The code recomputes them with an extra pass over
    a tenth of the training data at each epoch start.)
    """

    name = "pmr"

    def __init__(self, alpha: float = 0.6, momentum: float = 0.5, start_epoch: int = 0, modalities=None,
                 squared: bool = False, seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = check_number("alpha", alpha, 0.0)
        self.momentum = check_number("momentum", momentum, 0.0, 1.0)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
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
        smax = max(scores.values())
        coef = {m: min(max(smax / max(scores[m], _EPS) - 1.0, 0.0), 1.0) for m in self.modalities}
        if self.epoch < self.start_epoch:
            coef = {m: 0.0 for m in self.modalities}
        self._diag = {**{f"score/{m}": v for m, v in scores.items()}, **{f"coef/{m}": v for m, v in coef.items()}}
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
