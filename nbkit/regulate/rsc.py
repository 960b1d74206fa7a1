"""RSC (RSC-MD, arXiv 2511.15433) as a regulator: auxiliary unimodal heads and losses for any
model that names its encoders, so the mechanism composes with the classification models of
notebooks 03 and 05 (docs/methods/rscmd.md). Our rebuild: the paper's code was never
published.

    L = L_model + lambda_aux * sum_m L_m(head_m(f_m)),      f_m = out.features[m]

The heads belong to the regulator, not to the model: the Trainer's optimizer learns them
(they are added as a parameter group the first time they are used) and they never take part
in the model's prediction, so they are "dropped at inference" by construction. A model may
supply its own auxiliary head and loss (``make_aux_head(m)`` and ``aux_loss(m, pred,
batch)``, as `nbkit.models.RSCMDDetector` does: a detection head of the fused head's
architecture); otherwise a head is a linear layer on the flattened features with
cross-entropy on ``batch.y`` over the samples that have modality m (ours).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_weight
from .base import Regulator, encoder_params

__all__ = ["RSC"]


class RSC(Regulator):
    """Auxiliary unimodal heads + losses (the term ``rsc``, weight ``lambda_aux``; spec: 1)."""

    name = "rsc"

    def __init__(self, lambda_aux: float = 1.0, modalities: Sequence[str] | None = None, rsc: bool = True):
        super().__init__()
        self.lambda_aux = check_weight("lambda_aux", lambda_aux)
        if not isinstance(rsc, bool):
            raise TypeError(f"rsc must be True or False, got {rsc!r}")
        self.rsc = rsc
        self._modalities = None if modalities is None else tuple(modalities)
        self.heads: nn.ModuleDict | None = None
        if self.rsc:
            self.weights = {"rsc": self.lambda_aux}

    def attach(self, model, trainer) -> None:
        super().attach(model, trainer)
        self.modalities, self.params = encoder_params(self, model, self._modalities)
        self.heads = None

    # -- the auxiliary heads ------------------------------------------------------------
    def _build_heads(self, out) -> None:
        model = self.model
        missing = [m for m in self.modalities if m not in out.features]
        if missing:
            raise ValueError(f"{type(self).__name__} reads each modality's features from Output.features; "
                             f"{type(model).__name__} gives none for {missing}")
        if hasattr(model, "make_aux_head"):
            heads = {m: model.make_aux_head(m) for m in self.modalities}
        else:
            n_classes = getattr(model, "n_classes", None)
            if n_classes is None:
                raise TypeError(f"{type(self).__name__} needs model.n_classes (or model.make_aux_head) to build heads")
            heads = {m: nn.Linear(out.features[m][0].numel(), n_classes) for m in self.modalities}
        dev = out.features[self.modalities[0]].device
        self.heads = nn.ModuleDict(heads).to(dev)
        opt = getattr(self.trainer, "optimizer", None)
        if opt is not None:
            opt.add_param_group({"params": list(self.heads.parameters())})

    def aux_losses(self, batch, out) -> dict[str, Tensor]:
        """{m: L_m(head_m(f_m))}, unweighted."""
        if self.heads is None:
            self._build_heads(out)
        res = {}
        for m in self.modalities:
            f = out.features[m]
            if hasattr(self.model, "aux_loss"):
                res[m] = self.model.aux_loss(m, self.heads[m](f), batch)
                continue
            mk = batch.mask(m)
            logits = self.heads[m](f.flatten(1))
            res[m] = F.cross_entropy(logits[mk].float(), batch.y[mk]) if mk.any() else logits.sum() * 0
        return res

    def extra_terms(self, batch, out) -> dict[str, Tensor]:
        if not self.rsc:
            return {}
        return {"rsc": sum(self.aux_losses(batch, out).values())}
