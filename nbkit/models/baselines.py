"""Fusion baselines (docs/methods/fusion_baselines.md): unimodal, early fusion, late fusion (MM-late)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int
from ..data.batch import Batch
from ..nn.fusion import masked_softmax
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["Unimodal", "EarlyFusion", "LateFusion", "GatedFusion", "CoAttention"]


@dataclass
class UnimodalConfig(ModelConfig):
    modality: str = ""

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.modality, str):
            raise TypeError(f"modality must be the name of one modality (a string), got {self.modality!r}")


class Unimodal(MultimodalModel):
    """One modality alone: its encoder and a linear head. Samples missing it get uniform logits."""

    Config = UnimodalConfig

    def __init__(self, dims, n_classes, config=None, **overrides):
        dims = self.check_dims(dims)
        config = self.make_config(config, **overrides)
        m = config.modality
        if m == "":
            raise ValueError(f"Unimodal needs modality=<one of {list(dims)}>")
        if m not in dims:
            raise KeyError(f"modality {m!r} is not among {list(dims)}")
        super().__init__({m: dims[m]}, n_classes, config)
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

    def __post_init__(self):
        super().__post_init__()
        self.aux_heads = self.check_flag("aux_heads", self.aux_heads)


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
        self.check_labels(batch.y)
        total = 0.0
        for m in self.modalities:
            mk = batch.mask(m)
            if mk.any():
                total = total + F.cross_entropy(out.unimodal_logits[m][mk].float(), batch.y[mk])
        return {"task": total if isinstance(total, Tensor) else out.logits.sum() * 0}


# ----------------------------------------------------------------------------------------
# Fusion baselines without decomposition (docs/methods/fusion_baselines.md): gated fusion, co-attention.
# Both mask missing modalities (never a special code path), like DSRSD.

class GatedFusion(MultimodalModel):
    """Gated fusion without shared/private decomposition:

        alpha = softmax(W [h_1; ...; h_M] + b)   (logit of a missing modality -> -inf)
        u     = sum_m alpha_m h_m ;  logits = head(u)

    The same gate as DSRSD's (8) on the same encoder features, so a comparison isolates the
    decomposition. A sample with no modality gets alpha = 0, u = 0. Head: 2-layer MLP (ours).
    """

    def __init__(self, dims, n_classes, config=None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        d, M = self.config.d, len(self.modalities)
        self.gate = nn.Linear(M * d, M)
        self.head = nn.Sequential(nn.Linear(d, self.config.hidden), nn.GELU(), nn.Dropout(self.config.dropout),
                                  nn.Linear(self.config.hidden, n_classes))

    def forward(self, batch: Batch) -> Output:
        h = self.encode(batch)
        present = self.present(batch)
        alpha = masked_softmax(self.gate(torch.cat([h[m] for m in self.modalities], 1)), present)
        u = sum(alpha[:, i, None] * h[m] for i, m in enumerate(self.modalities))
        return Output(logits=self.head(u), features=h, fused=u, gate=alpha)


@dataclass
class CoAttentionConfig(ModelConfig):
    heads: int = 4              # attention heads (ours); d must be divisible by it

    def __post_init__(self):
        super().__post_init__()
        self.heads = check_int("heads", self.heads, 1)
        if self.d % self.heads:
            raise ValueError(f"heads must be an integer >= 1 that divides d={self.d}, got heads={self.heads}")


class CoAttention(MultimodalModel):
    """Co-attention fusion: each modality token attends to the OTHER modalities' tokens.

        t_m  = h_m + e_m                                        (e_m: learned modality embedding)
        c_m  = sum_{k != m, k present} softmax_k(q(t_m) . k(t_k) / sqrt(d_head)) v(t_k)
        t'_m = LayerNorm(t_m + out(c_m));  t''_m = LayerNorm(t'_m + FFN(t'_m))
        u    = mean of t''_m over present modalities;  logits = head(u)

    Missing modalities are masked as keys (and left out of the pooling); a token with no
    present partner gets c_m = 0 (no NaN). One layer, sizes ours.
    """

    Config = CoAttentionConfig

    def __init__(self, dims, n_classes, config=None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        d, M = self.config.d, len(self.modalities)
        self.embed = nn.Parameter(torch.randn(M, d) * 0.02)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, self.config.hidden), nn.GELU(), nn.Linear(self.config.hidden, d))
        self.head = nn.Linear(d, n_classes)

    def forward(self, batch: Batch) -> Output:
        h = self.encode(batch)
        present = self.present(batch)                                           # [B, M]
        B, M, d, H = len(batch), len(self.modalities), self.config.d, self.config.heads
        t = torch.stack([h[m] for m in self.modalities], 1) + self.embed        # [B, M, d]
        q, k, v = self.qkv(t).view(B, M, 3, H, d // H).permute(2, 0, 3, 1, 4)  # each [B, H, M, dh]
        score = q @ k.transpose(-1, -2) / (d // H) ** 0.5                       # [B, H, M(q), M(k)]
        allowed = present[:, None, None, :] & ~torch.eye(M, dtype=torch.bool, device=t.device)
        score = score.masked_fill(~allowed, float("-inf"))
        has_key = allowed.any(-1, keepdim=True)                                 # [B, 1, M, 1]
        attn = torch.softmax(torch.where(has_key, score, torch.zeros_like(score)), -1) * has_key
        c = (attn @ v).transpose(1, 2).reshape(B, M, d)
        t = self.norm1(t + self.out(c))
        t = self.norm2(t + self.ffn(t))
        w = present.to(t.dtype)
        u = (t * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
        feats = {m: t[:, i] * w[:, i, None] for i, m in enumerate(self.modalities)}
        return Output(logits=self.head(u), features=h, fused=u,
                      extras={"attention": attn.mean(1), "tokens": feats})


