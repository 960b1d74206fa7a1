"""`Batch`, the one type every model, loss and protocol speaks, and `MultimodalDataset`.

A dataset here is small enough to live in memory as tensors, so batching is plain tensor
indexing (much faster on a 2-core CPU than a DataLoader with workers).

Conversions made on construction (and only these; docs/ARCHITECTURE.md, "Conversions"):
features of another floating type (numpy float64, float16, bfloat16) become float32;
integer or bool labels become int64; a 0/1 integer or float ``present`` mask becomes bool;
numpy arrays become tensors. Everything else that does not fit is an error naming the
argument: integer, bool or complex features (scale them to floats yourself, e.g.
``pixels / 255``), negative labels or labels outside ``class_names``, float labels with
``class_names``, a mask with values other than 0/1, and samples with no modality present.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from .._checks import check_choice, check_finite, check_int, check_number

__all__ = ["Batch", "MultimodalDataset"]

_TO_FLOAT32 = (torch.float64, torch.float16, torch.bfloat16)


def _as_tensor(name: str, v) -> Tensor:
    """``v`` as a tensor (numpy arrays and nested lists convert); anything else is a TypeError."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (str, bytes, Mapping)) or v is None:
        raise TypeError(f"{name} must be a tensor or numpy array, got {type(v).__name__}")
    try:
        return torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor or numpy array of numbers, got {type(v).__name__} "
                        f"({exc})") from None


def _features(name: str, t: Tensor) -> Tensor:
    """Float32 features: other float types convert; integer, bool and complex are errors."""
    if t.dtype in _TO_FLOAT32:
        return t.float()
    if t.dtype != torch.float32:
        hint = " (e.g. pixels: x.float() / 255)" if t.dtype == torch.uint8 else ""
        raise TypeError(f"{name} must hold floating-point features (float32; float64/float16 are converted), "
                        f"got {t.dtype}; convert and scale them first{hint}")
    return t


def _labels(name: str, y: Tensor) -> Tensor:
    """int64 class labels from any integer or bool dtype; float (regression) stays float32."""
    if y.dtype == torch.int64:
        return y
    if y.dtype == torch.bool or not (y.is_floating_point() or y.is_complex()):
        return y.long()
    if y.is_floating_point():
        return y.float() if y.dtype != torch.float32 else y
    raise TypeError(f"{name} must hold integer class labels (or float regression targets), got {y.dtype}")


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
        # cheap checks only (this runs for every training step): types, shapes, dtypes
        if not isinstance(self.x, Mapping) or len(self.x) == 0:
            raise ValueError("Batch.x must be a non-empty dict {modality name: tensor}")
        if not isinstance(self.y, Tensor):
            raise TypeError(f"Batch.y must be a torch.Tensor [B], got {type(self.y).__name__}")
        if self.y.ndim != 1:
            raise ValueError(f"Batch.y must have shape [B] (one target per sample), got {tuple(self.y.shape)}")
        if self.y.dtype != torch.int64 and not self.y.is_floating_point():
            self.y = _labels("Batch.y", self.y)
        n = self.y.shape[0]
        conv = None
        for m, t in self.x.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"Batch.x[{m!r}] must be a torch.Tensor, got {type(t).__name__}")
            if t.shape[0] != n:
                raise ValueError(
                    f"Batch.x[{m!r}] has {t.shape[0]} rows but y has {n}; all modalities "
                    f"must be paired sample by sample"
                )
            if t.dtype != torch.float32:
                conv = conv if conv is not None else dict(self.x)
                conv[m] = _features(f"Batch.x[{m!r}]", t)
        if conv is not None:
            self.x = conv
        if not isinstance(self.present, Tensor) or self.present.dtype != torch.bool \
                or tuple(self.present.shape) != (n, len(self.x)):
            raise ValueError(
                f"Batch.present must be a bool tensor of shape [{n}, {len(self.x)}] "
                f"(samples x modalities), got "
                + (f"{self.present.dtype} {tuple(self.present.shape)}" if isinstance(self.present, Tensor)
                   else type(self.present).__name__)
            )
        if not isinstance(self.factors, Mapping):
            raise TypeError(f"Batch.factors must be a dict {{name: tensor [B, ...]}}, got {type(self.factors).__name__}")
        for k, v in self.factors.items():
            if not isinstance(v, Tensor) or v.ndim == 0 or v.shape[0] != n:
                raise ValueError(f"Batch.factors[{k!r}] must be a tensor with {n} rows (one per sample), got "
                                 + (f"shape {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__))

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
        x, y = _check_x_y(x, y)
        n = y.shape[0]
        class_names = _check_class_names(class_names, y)
        present = _check_present(present, n, len(x))
        if factors is not None and not isinstance(factors, Mapping):
            raise TypeError(f"factors must be a dict {{name: tensor [N, ...]}}, got {type(factors).__name__}")
        factors = {str(k): _as_tensor(f"factors[{k!r}]", v) for k, v in (factors or {}).items()}
        for k, v in factors.items():
            if v.ndim == 0 or v.shape[0] != n:
                raise ValueError(f"factors[{k!r}] has {v.shape[0] if v.ndim else 0} rows but y has {n}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        if info is not None and not isinstance(info, Mapping):
            raise TypeError(f"info must be a dict, got {type(info).__name__}")
        self.x = x
        self.y = y
        self.present = present
        self.factors = factors
        self.name = name
        self.class_names = class_names
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
        """The samples at ``idx``: integer positions (a list, array or long tensor) or a bool
        mask of length N."""
        idx = self._check_index(idx)
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

    def _check_index(self, idx) -> Tensor:
        n = len(self)
        t = _as_tensor("idx", idx) if not isinstance(idx, range) else torch.tensor(list(idx), dtype=torch.long)
        if t.dtype == torch.bool:
            if tuple(t.shape) != (n,):
                raise ValueError(f"idx as a bool mask must have shape [{n}], got {tuple(t.shape)}")
            return torch.nonzero(t).flatten()
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"idx must hold integer positions or be a bool mask, got {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() and (int(t.min()) < -n or int(t.max()) >= n):
            raise IndexError(f"idx must hold positions in [-{n}, {n - 1}], got values from {int(t.min())} to {int(t.max())}")
        return t

    def select(self, modalities: Sequence[str]) -> "MultimodalDataset":
        if isinstance(modalities, str):
            modalities = [modalities]
        unknown = [m for m in modalities if m not in self.x]
        if unknown or not modalities:
            raise KeyError(f"unknown or empty modalities {list(modalities)}; have {list(self.modalities)}")
        idx = [self.modalities.index(m) for m in modalities]
        return self._like({m: self.x[m] for m in modalities}, self.present[:, idx])

    def batches(
        self, batch_size: int = 128, shuffle: bool = False, generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        batch_size = check_int("batch_size", batch_size, 1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield self[order[start:start + batch_size]]

    def n_batches(self, batch_size: int, drop_last: bool = False) -> int:
        batch_size = check_int("batch_size", batch_size, 1)
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def split(
        self, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, stratify: bool = True,
    ) -> tuple["MultimodalDataset", ...]:
        """Deterministic train/val/test (or any number of parts) split by ``seed``.

        With ``stratify`` (classification only) every part keeps the class proportions.
        """
        if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
            raise TypeError(f"fractions must be >= 2 positive numbers summing to 1, got {fractions!r}")
        fr = [check_number(f"fractions[{i}]", f, 0.0, 1.0, lo_open=True) for i, f in enumerate(fractions)]
        if len(fr) < 2 or abs(sum(fr) - 1) > 1e-6:
            raise ValueError(f"fractions must be >= 2 positive numbers summing to 1, got {list(fractions)}")
        check_choice("stratify", stratify, (True, False))
        g = torch.Generator().manual_seed(check_int("seed", seed))
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


def _check_x_y(x, y) -> tuple[dict, Tensor]:
    """Features and labels as tensors of the dtypes the models expect (see `_features`,
    `_labels`), one row per sample, finite."""
    if not isinstance(x, Mapping) or len(x) < 1:
        raise ValueError(f"x must be a non-empty dict {{modality name: tensor [N, ...]}}, got "
                         f"{type(x).__name__ if not isinstance(x, Mapping) else 'an empty dict'}")
    for m in x:
        if not isinstance(m, str) or m == "":
            raise ValueError(f"modality names (the keys of x) must be non-empty strings, got {m!r}")
    x = {m: _as_tensor(f"x[{m!r}]", t) for m, t in x.items()}
    y = _as_tensor("y", y)
    if y.ndim != 1:
        raise ValueError(f"y must have shape [N], got {tuple(y.shape)}")
    y = _labels("y", y)
    n = y.shape[0]
    for m, t in x.items():
        if t.ndim < 2:
            raise ValueError(f"x[{m!r}] must have shape [N, D] or [N, T, D], got {tuple(t.shape)}")
        if t.shape[0] != n:
            raise ValueError(f"x[{m!r}] has {t.shape[0]} samples but y has {n}")
        if t.numel() == 0:
            raise ValueError(f"x[{m!r}] is empty (shape {tuple(t.shape)})")
        x[m] = t = _features(f"x[{m!r}]", t)
        check_finite(f"x[{m!r}]", t)
    return x, y


def _check_class_names(class_names, y: Tensor) -> list[str] | None:
    """Distinct class names, and labels that index them (no negative label: -100 is not a
    'missing' code here)."""
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
            raise TypeError(f"class_names must be a list of names, one per class, got {class_names!r}")
        class_names = [str(c) for c in class_names]
        if len(class_names) < 2 or len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names must be >= 2 distinct names, got {class_names}")
    if y.is_floating_point():
        check_finite("y", y)
        if class_names is not None:
            raise TypeError(f"y must hold integer class labels when class_names are given, got {y.dtype} "
                            f"(float y means regression targets); convert with y.long()")
    elif len(y):
        lo, hi = int(y.min()), int(y.max())
        top = len(class_names) if class_names is not None else None
        if lo < 0 or (top is not None and hi >= top):
            allowed = f"0..{top - 1} (one per class name)" if top is not None else ">= 0"
            raise ValueError(f"y must hold class labels in {allowed}, got labels from {lo} to {hi}"
                             + (" (-100 is not a 'missing' code here: drop those rows)" if lo == -100 else ""))
    return class_names


def _check_present(present, n: int, m: int) -> Tensor:
    """A bool [n, m] mask (0/1 values converted); every sample has at least one modality."""
    if present is None:
        present = torch.ones(n, m, dtype=torch.bool)
    present = _as_tensor("present", present)
    if tuple(present.shape) != (n, m):
        raise ValueError(f"present must have shape [{n}, {m}], got {tuple(present.shape)}")
    if present.dtype != torch.bool:
        if present.is_complex() or not ((present == 0) | (present == 1)).all():
            raise ValueError(f"present must be a bool mask (or 0/1 values), got {present.dtype} with values "
                             f"{sorted(set(present.flatten().tolist()))[:5]}")
        present = present != 0
    empty = ~present.any(1)
    if bool(empty.any()):
        rows = torch.nonzero(empty).flatten()
        raise ValueError(f"present marks {len(rows)} samples with no modality at all (rows "
                         f"{rows[:5].tolist()}{'...' if len(rows) > 5 else ''}); a sample without input has "
                         f"no prediction to score: drop those rows")
    return present
