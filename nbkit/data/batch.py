"""`Batch`, the one type every model, loss and protocol speaks, and `MultimodalDataset`.

A dataset here is small enough to live in memory as tensors, so batching is plain tensor
indexing (much faster on a 2-core CPU than a DataLoader with workers).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from .._checks import check_finite

__all__ = ["Batch", "MultimodalDataset"]


@dataclass
class Batch:
    """One batch of paired multimodal samples.

    x:        modality name -> tensor [B, ...] (feature vectors [B, D] or sequences [B, T, D]).
              A missing modality's values are zeros; ``present`` is the truth.
    present:  bool [B, M], which modalities each sample has, columns in ``modalities`` order.
    y:        target [B] (long class index) or [B] float for regression.
    factors:  optional ground truth per sample, name -> tensor [B, ...] (the synthetic
              generator's shared/private factors, avdigits' speaker attributes, ...).
    """

    x: dict[str, Tensor]
    present: Tensor
    y: Tensor
    factors: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.x, Mapping) or len(self.x) == 0:
            raise ValueError("Batch.x must be a non-empty dict {modality name: tensor}")
        n = self.y.shape[0]
        for m, t in self.x.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"Batch.x[{m!r}] must be a torch.Tensor, got {type(t).__name__}")
            if t.shape[0] != n:
                raise ValueError(
                    f"Batch.x[{m!r}] has {t.shape[0]} rows but y has {n}; all modalities "
                    f"must be paired sample by sample"
                )
        if self.present.dtype != torch.bool or tuple(self.present.shape) != (n, len(self.x)):
            raise ValueError(
                f"Batch.present must be a bool tensor of shape [{n}, {len(self.x)}] "
                f"(samples x modalities), got {self.present.dtype} {tuple(self.present.shape)}"
            )

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.x)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def index(self, m: str) -> int:
        try:
            return self.modalities.index(m)
        except ValueError:
            raise KeyError(f"unknown modality {m!r}; this batch has {list(self.modalities)}") from None

    def mask(self, m: str) -> Tensor:
        """bool [B]: which samples have modality ``m``."""
        return self.present[:, self.index(m)]

    def to(self, device) -> "Batch":
        return Batch(
            x={m: t.to(device, non_blocking=True) for m, t in self.x.items()},
            present=self.present.to(device),
            y=self.y.to(device),
            factors={k: v.to(device) for k, v in self.factors.items()},
        )

    def select(self, modalities: Sequence[str]) -> "Batch":
        """The same samples with only the named modalities (in that order)."""
        idx = [self.index(m) for m in modalities]
        return Batch({m: self.x[m] for m in modalities}, self.present[:, idx], self.y, dict(self.factors))

    def with_x(self, x: dict[str, Tensor], present: Tensor | None = None) -> "Batch":
        return replace(self, x=x, present=self.present if present is None else present)


class MultimodalDataset:
    """Paired multimodal samples held as tensors.

    >>> ds = MultimodalDataset({"a": torch.randn(10, 3), "b": torch.randn(10, 5)}, torch.zeros(10).long())
    >>> ds[:4].x["a"].shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        x: Mapping[str, Tensor],
        y: Tensor,
        present: Tensor | None = None,
        factors: Mapping[str, Tensor] | None = None,
        name: str = "dataset",
        class_names: Sequence[str] | None = None,
        info: dict | None = None,
    ):
        if not isinstance(x, Mapping) or len(x) < 1:
            raise ValueError("x must be a non-empty dict {modality name: tensor [N, ...]}")
        x = {str(m): torch.as_tensor(t) for m, t in x.items()}
        y = torch.as_tensor(y)
        if y.ndim != 1:
            raise ValueError(f"y must have shape [N], got {tuple(y.shape)}")
        n = y.shape[0]
        for m, t in x.items():
            if m == "":
                raise ValueError("modality names must be non-empty strings")
            if t.ndim < 2:
                raise ValueError(
                    f"x[{m!r}] must have shape [N, D] or [N, T, D], got {tuple(t.shape)}"
                )
            if t.shape[0] != n:
                raise ValueError(f"x[{m!r}] has {t.shape[0]} samples but y has {n}")
            if t.numel() == 0:
                raise ValueError(f"x[{m!r}] is empty (shape {tuple(t.shape)})")
            check_finite(f"x[{m!r}]", t)
        if y.is_floating_point():
            check_finite("y", y)
        if present is None:
            present = torch.ones(n, len(x), dtype=torch.bool)
        present = torch.as_tensor(present, dtype=torch.bool)
        if tuple(present.shape) != (n, len(x)):
            raise ValueError(f"present must have shape [{n}, {len(x)}], got {tuple(present.shape)}")
        factors = {str(k): torch.as_tensor(v) for k, v in (factors or {}).items()}
        for k, v in factors.items():
            if v.shape[0] != n:
                raise ValueError(f"factors[{k!r}] has {v.shape[0]} rows but y has {n}")
        self.x = x
        self.y = y
        self.present = present
        self.factors = factors
        self.name = name
        self.class_names = list(class_names) if class_names is not None else None
        self.info = dict(info or {})

    # ---- basic protocol -------------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.x)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_classes(self) -> int:
        if self.y.is_floating_point():
            raise ValueError(f"{self.name} is a regression dataset (float y): it has no classes")
        return int(self.y.max()) + 1 if self.class_names is None else len(self.class_names)

    def dims(self) -> dict[str, tuple[int, ...]]:
        """Per-modality feature shape (without the sample axis)."""
        return {m: tuple(t.shape[1:]) for m, t in self.x.items()}

    def __getitem__(self, idx) -> Batch:
        return Batch(
            x={m: t[idx] for m, t in self.x.items()},
            present=self.present[idx],
            y=self.y[idx],
            factors={k: v[idx] for k, v in self.factors.items()},
        )

    def subset(self, idx) -> "MultimodalDataset":
        idx = torch.as_tensor(idx)
        return self._like(
            {m: t[idx] for m, t in self.x.items()}, self.present[idx], y=self.y[idx],
            factors={k: v[idx] for k, v in self.factors.items()},
        )

    def _like(self, x, present, y=None, factors=None, **info) -> "MultimodalDataset":
        new = MultimodalDataset.__new__(MultimodalDataset)
        new.x, new.present = dict(x), present
        new.y = self.y if y is None else y
        new.factors = dict(self.factors if factors is None else factors)
        new.name, new.class_names = self.name, self.class_names
        new.info = {**self.info, **info}
        return new

    def select(self, modalities: Sequence[str]) -> "MultimodalDataset":
        unknown = [m for m in modalities if m not in self.x]
        if unknown or not modalities:
            raise KeyError(f"unknown or empty modalities {list(modalities)}; have {list(self.modalities)}")
        idx = [self.modalities.index(m) for m in modalities]
        return self._like({m: self.x[m] for m in modalities}, self.present[:, idx])

    def batches(
        self, batch_size: int = 128, shuffle: bool = False, generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield self[order[start:start + batch_size]]

    def n_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def split(
        self, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, stratify: bool = True,
    ) -> tuple["MultimodalDataset", ...]:
        """Deterministic train/val/test (or any number of parts) split by ``seed``.

        With ``stratify`` (classification only) every part keeps the class proportions.
        """
        fr = [float(f) for f in fractions]
        if len(fr) < 2 or any(f <= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ValueError(f"fractions must be >= 2 positive numbers summing to 1, got {list(fractions)}")
        g = torch.Generator().manual_seed(int(seed))
        groups = (
            [torch.nonzero(self.y == c).flatten() for c in torch.unique(self.y)]
            if stratify and not self.y.is_floating_point() else [torch.arange(len(self))]
        )
        parts: list[list[Tensor]] = [[] for _ in fr]
        for idx in groups:
            idx = idx[torch.randperm(len(idx), generator=g)]
            bounds = torch.tensor([0.0] + list(torch.cumsum(torch.tensor(fr), 0))) * len(idx)
            bounds = bounds.round().long()
            for k in range(len(fr)):
                parts[k].append(idx[bounds[k]:bounds[k + 1]])
        out = []
        for p in parts:
            idx = torch.cat(p).sort().values
            if len(idx) == 0:
                raise ValueError(f"split {fr} of {len(self)} samples leaves a part empty")
            out.append(self.subset(idx))
        return tuple(out)

    def describe(self) -> str:
        """What this data set is, in one line for claim rows and reports: the loader's
        ``info["description"]`` (e.g. "synthetic n=2000 snr=[4, 1]", "avdigits n=1500
        image_noise=1"), else its name and size. Subsets and splits keep the description of
        the data set they were cut from."""
        desc = self.info.get("description")
        return str(desc) if desc else f"{self.name} n={len(self)}"

    def __repr__(self) -> str:
        dims = ", ".join(f"{m}: {list(s)}" for m, s in self.dims().items())
        miss = 1 - self.present.float().mean().item()
        return f"MultimodalDataset({self.name!r}, n={len(self)}, {dims}, missing={miss:.1%})"
