"""`Output`, the one type models return, and `MultimodalModel`, the base every method extends.

Contract (see ARCHITECTURE.md):
- ``forward(batch) -> Output``; missing modalities come through ``batch.present``.
- ``loss_terms(batch, out) -> dict[str, Tensor]``: UNWEIGHTED named terms. ``"task"`` has
  weight 1; every other term ``"t"`` is weighted by the config field ``lambda_t``, so one
  number in one place (a widget, a papermill parameter) changes one weight.
- ``encoders``: an ``nn.ModuleDict`` keyed by modality, so regulators can find each
  modality's parameters; ``unimodal_logits`` in the Output when the model has per-modality heads.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batch import Batch, MultimodalDataset
from ..nn.encoders import make_encoder

__all__ = ["Output", "ModelConfig", "MultimodalModel"]


@dataclass
class Output:
    logits: Tensor
    features: dict[str, Tensor] = field(default_factory=dict)        # encoder output per modality
    unimodal_logits: dict[str, Tensor] = field(default_factory=dict)  # per-modality heads
    shared: dict[str, Tensor] = field(default_factory=dict)
    private: dict[str, Tensor] = field(default_factory=dict)
    fused: Tensor | None = None                                       # representation before the head
    gate: Tensor | None = None                                        # [B, M] fusion weights
    codes: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Shared sizes. Subclasses add ``lambda_<term>`` weights for their loss terms."""

    d: int = 64          # representation size (ours)
    hidden: int = 128    # encoder hidden width (ours)
    dropout: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("lambda_") and (not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"{f.name} must be a number >= 0, got {v!r}")
        if self.d < 1 or self.hidden < 1:
            raise ValueError(f"d and hidden must be >= 1, got d={self.d}, hidden={self.hidden}")

    def loss_weights(self) -> dict[str, float]:
        w = {"task": 1.0}
        for f in fields(self):
            if f.name.startswith("lambda_"):
                w[f.name[len("lambda_"):]] = float(getattr(self, f.name))
        return w

    def to_dict(self) -> dict:
        return asdict(self)


class MultimodalModel(nn.Module):
    Config = ModelConfig

    def __init__(self, dims: dict[str, tuple[int, ...]], n_classes: int, config: ModelConfig | None = None, **overrides):
        super().__init__()
        if not dims:
            raise ValueError("dims must name at least one modality: {name: per-sample shape}")
        if int(n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        config = config if config is not None else self.Config()
        if overrides:
            unknown = set(overrides) - {f.name for f in fields(config)}
            if unknown:
                raise TypeError(f"unknown config fields {sorted(unknown)} for {type(self).__name__}; "
                                f"known: {[f.name for f in fields(config)]}")
            config = type(config)(**{**asdict(config), **overrides})
        self.config = config
        self.dims = {m: tuple(s) for m, s in dims.items()}
        self.modalities = tuple(self.dims)
        self.n_classes = int(n_classes)
        self.encoders = nn.ModuleDict({m: make_encoder(s, config.d, config.hidden) for m, s in self.dims.items()})

    @classmethod
    def for_dataset(cls, ds: MultimodalDataset, **config) -> "MultimodalModel":
        return cls(ds.dims(), ds.n_classes, **config)

    # ---- helpers shared by all methods ----------------------------------------------
    def check_batch(self, batch: Batch) -> None:
        missing = [m for m in self.modalities if m not in batch.x]
        if missing:
            raise KeyError(f"{type(self).__name__} needs modalities {list(self.modalities)}; "
                           f"the batch lacks {missing} (it has {list(batch.modalities)})")
        for m in self.modalities:
            if tuple(batch.x[m].shape[1:]) != self.dims[m]:
                raise ValueError(f"batch.x[{m!r}] has per-sample shape {tuple(batch.x[m].shape[1:])}, "
                                 f"the model was built for {self.dims[m]}")

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        """Encoder features per modality, zero where the modality is missing. A missing
        modality's values are replaced by zeros BEFORE its encoder, so garbage or NaN there
        cannot leak into the output."""
        self.check_batch(batch)
        h = {}
        for m in self.modalities:
            x, mk = batch.x[m], batch.mask(m)
            x = torch.where(mk.view(-1, *([1] * (x.ndim - 1))), x, torch.zeros((), dtype=x.dtype, device=x.device))
            h[m] = self.encoders[m](x) * mk[:, None].to(x.dtype)
        return h

    def present(self, batch: Batch) -> Tensor:
        """bool [B, M] in this model's modality order."""
        return torch.stack([batch.mask(m) for m in self.modalities], 1)

    def task_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), y)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        return {"task": self.task_loss(out.logits, batch.y)}

    def loss_weights(self) -> dict[str, float]:
        return self.config.loss_weights()

    def forward(self, batch: Batch) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError
