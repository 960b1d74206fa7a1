"""Fusion baselines (specs/baselines.md): unimodal, early fusion, late fusion (MM-late)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batch import Batch
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["Unimodal", "EarlyFusion", "LateFusion"]


@dataclass
class UnimodalConfig(ModelConfig):
    modality: str = ""


class Unimodal(MultimodalModel):
    """One modality alone: its encoder and a linear head. Samples missing it get uniform logits."""

    Config = UnimodalConfig

    def __init__(self, dims, n_classes, config=None, **overrides):
        if config is None and "modality" not in overrides:
            raise ValueError(f"Unimodal needs modality=<one of {list(dims)}>")
        m = (config.modality if config is not None else overrides["modality"])
        if m not in dims:
            raise KeyError(f"modality {m!r} is not among {list(dims)}")
        super().__init__({m: dims[m]}, n_classes, config, **overrides)
        self.head = nn.Linear(self.config.d, n_classes)

    def forward(self, batch: Batch) -> Output:
        m = self.config.modality
        h = self.encode(batch.select([m]))
        logits = self.head(h[m]) * batch.mask(m)[:, None]
        return Output(logits=logits, features=h, unimodal_logits={m: logits}, fused=h[m])


@dataclass
class EarlyFusionConfig(ModelConfig):
    aux_heads: bool = False     # add per-modality heads and their CE terms (joint training of RedReg/OGM-GE)
    lambda_uni: float = 1.0     # weight of the summed unimodal CE terms when aux_heads


class EarlyFusion(MultimodalModel):
    """Concatenate encoder outputs (zeros for a missing modality); one linear head.

    The head is linear on [h_1; ...; h_M] so OGM-GE can split it into per-modality parts.
    """

    Config = EarlyFusionConfig

    def __init__(self, dims, n_classes, config=None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        d = self.config.d
        self.head = nn.Linear(d * len(self.modalities), n_classes)
        self.aux = nn.ModuleDict({m: nn.Linear(d, n_classes) for m in self.modalities}) if self.config.aux_heads else None

    def forward(self, batch: Batch) -> Output:
        h = self.encode(batch)
        fused = torch.cat([h[m] for m in self.modalities], 1)
        uni = {m: self.aux[m](h[m]) for m in self.modalities} if self.aux is not None else {}
        return Output(logits=self.head(fused), features=h, unimodal_logits=uni, fused=fused)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        terms = {"task": self.task_loss(out.logits, batch.y)}
        if out.unimodal_logits:
            terms["uni"] = sum(self.task_loss(l, batch.y) for l in out.unimodal_logits.values())
        return terms


class LateFusion(MultimodalModel):
    """MM-late: one encoder+head per modality, trained on its own CE; the prediction averages
    the class probabilities over the modalities each sample has."""

    def __init__(self, dims, n_classes, config=None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        self.heads = nn.ModuleDict({m: nn.Linear(self.config.d, n_classes) for m in self.modalities})

    def forward(self, batch: Batch) -> Output:
        h = self.encode(batch)
        uni = {m: self.heads[m](h[m]) for m in self.modalities}
        pres = self.present(batch).float()                                   # [B, M]
        probs = torch.stack([F.softmax(uni[m].float(), 1) for m in self.modalities], 1)  # [B, M, C]
        w = pres / pres.sum(1, keepdim=True).clamp_min(1.0)
        p = (probs * w[..., None]).sum(1)
        p = torch.where(pres.sum(1, keepdim=True) > 0, p, torch.full_like(p, 1.0 / self.n_classes))
        return Output(logits=torch.log(p.clamp_min(1e-8)), features=h, unimodal_logits=uni, gate=w)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        # each head learns from the samples that have its modality
        total = 0.0
        for m in self.modalities:
            mk = batch.mask(m)
            if mk.any():
                total = total + F.cross_entropy(out.unimodal_logits[m][mk].float(), batch.y[mk])
        return {"task": total if isinstance(total, Tensor) else out.logits.sum() * 0}
