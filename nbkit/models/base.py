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
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice, check_finite, check_int, check_number, check_weight
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
    dropout: float = 0.0  # in every encoder's hidden layer and in the heads that have one (train mode only)

    def __post_init__(self):
        for f in fields(self):
            if f.name.startswith("lambda_"):   # NaN and inf are rejected, not only negatives
                setattr(self, f.name, check_weight(f.name, getattr(self, f.name)))
        self.d = check_int("d", self.d, 1)
        self.hidden = check_int("hidden", self.hidden, 1)
        self.dropout = check_number("dropout", self.dropout, 0.0, 1.0, hi_open=True)

    @staticmethod
    def check_flag(name: str, v) -> bool:
        """A switch must be True or False (a string such as "no" would count as True)."""
        check_choice(name, v, (True, False))
        return bool(v)

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
        self.dims = self.check_dims(dims)
        self.n_classes = check_int("n_classes", n_classes, 2)
        self.config = config = self.make_config(config, **overrides)
        self.modalities = tuple(self.dims)
        self.encoders = nn.ModuleDict({m: make_encoder(s, config.d, config.hidden, config.dropout)
                                       for m, s in self.dims.items()})

    @staticmethod
    def check_dims(dims) -> dict[str, tuple[int, ...]]:
        """``{modality: per-sample shape}`` with shapes (D,) or (T, D) of positive ints, in order."""
        if not isinstance(dims, Mapping) or not dims:
            raise ValueError(f"dims must name at least one modality: {{name: per-sample shape}}, got {dims!r}")
        out = {}
        for m, s in dims.items():
            if not isinstance(m, str) or not m:
                raise ValueError(f"dims keys must be non-empty modality names, got {m!r}")
            if isinstance(s, (str, bytes)) or not isinstance(s, Sequence) or len(s) not in (1, 2):
                raise ValueError(f"dims[{m!r}] must be a per-sample shape (D,) or (T, D), got {s!r}")
            out[m] = tuple(check_int(f"dims[{m!r}][{i}]", v, 1) for i, v in enumerate(s))
        return out

    @classmethod
    def make_config(cls, config=None, **overrides) -> ModelConfig:
        """This model's ``Config`` from an instance of it, a dict of its fields or None
        (defaults); ``overrides`` win. Unknown fields and other models' configs are errors."""
        ccls = type(config) if isinstance(config, cls.Config) else cls.Config
        names = [f.name for f in fields(ccls)]
        if config is None:
            base = {}
        elif isinstance(config, Mapping):
            base = dict(config)
        elif isinstance(config, cls.Config):
            if not overrides:
                return config
            base = asdict(config)
        else:
            raise TypeError(f"config must be a {cls.Config.__name__} (or a dict of its fields, or None), "
                            f"got {type(config).__name__}")
        unknown = set(base) | set(overrides)
        unknown -= set(names)
        if unknown:
            raise TypeError(f"unknown config fields {sorted(unknown)} for {cls.__name__}; known: {names}")
        return ccls(**{**base, **overrides})

    @classmethod
    def for_dataset(cls, ds: MultimodalDataset, **config) -> "MultimodalModel":
        return cls(ds.dims(), ds.n_classes, **config)

    # ---- helpers shared by all methods ----------------------------------------------
    def check_batch(self, batch: Batch) -> None:
        if not isinstance(batch, Batch):
            hint = " (index it: ds[i:j], or loop over ds.batches(...))" if isinstance(batch, MultimodalDataset) else ""
            raise TypeError(f"batch must be an nbkit Batch, got {type(batch).__name__}{hint}")
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
        h, xs = {}, {}
        for m in self.modalities:
            x, mk = batch.x[m], batch.mask(m)
            xs[m] = torch.where(mk.view(-1, *([1] * (x.ndim - 1))), x, torch.zeros((), dtype=x.dtype, device=x.device))
        # NaN/inf in a PRESENT entry is an error naming the modality (one check, one sync)
        if not bool(torch.isfinite(sum(x.detach().sum() for x in xs.values()))):   # fast path; exact check below
            for m, x in xs.items():
                check_finite(f"batch.x[{m!r}] (present entries)", x)
        for m in self.modalities:
            h[m] = self.encoders[m](xs[m]) * batch.mask(m)[:, None].to(xs[m].dtype)
        return h

    def present(self, batch: Batch) -> Tensor:
        """bool [B, M] in this model's modality order."""
        return torch.stack([batch.mask(m) for m in self.modalities], 1)

    def check_labels(self, y: Tensor) -> None:
        """Class labels in [0, n_classes): float targets and out-of-range labels (cross-entropy
        would silently ignore -100 and fail deep in torch on the others) are errors naming y."""
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class labels for {type(self).__name__} (a classifier), got "
                            f"{y.dtype}; convert with y.long()")
        if y.numel():
            lo, hi = torch.stack(torch.aminmax(y)).tolist()      # one sync
            if lo < 0 or hi >= self.n_classes:
                raise ValueError(f"y must hold class labels in 0..{self.n_classes - 1} (n_classes={self.n_classes}), "
                                 f"got labels from {lo} to {hi}")

    def task_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        self.check_labels(y)
        return F.cross_entropy(logits.float(), y)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        return {"task": self.task_loss(out.logits, batch.y)}

    def loss_weights(self) -> dict[str, float]:
        return self.config.loss_weights()

    def forward(self, batch: Batch) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError
