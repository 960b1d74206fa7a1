"""Corruption for any dataset or batch: missing modalities and additive noise, per modality.

Both functions return a new object and never touch the input. A missing modality is a
``present`` mask plus zeroed values (models that ignore masks then see zeros).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from .._checks import check_choice, check_int, check_nonnegative, check_probability
from .batch import Batch, MultimodalDataset

__all__ = ["drop_modalities", "add_noise"]


def _per_modality(name: str, value, modalities: Sequence[str], check) -> dict[str, object]:
    if isinstance(value, Mapping):
        unknown = [m for m in value if m not in modalities]
        if unknown:
            raise KeyError(f"{name} names unknown modalities {unknown}; have {list(modalities)}")
        return {m: check(f"{name}[{m!r}]", v) for m, v in value.items()}
    return {m: check(name, value) for m in modalities}


def _check_data(data) -> None:
    if not isinstance(data, (MultimodalDataset, Batch)):
        raise TypeError(f"data must be a MultimodalDataset or Batch, got {type(data).__name__}")


def _targets(modalities, all_modalities):
    if modalities is None:
        return list(all_modalities)
    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    unknown = [m for m in modalities if m not in all_modalities]
    if unknown or not modalities:
        raise KeyError(f"modalities {modalities} must be a non-empty subset of {list(all_modalities)}")
    return modalities


def drop_modalities(data, p, seed: int = 0, modalities: Sequence[str] | None = None, keep_one: bool = True):
    """Each sample loses each targeted modality independently with probability ``p``.

    p: a float in [0, 1] or {modality: float}. With ``keep_one`` (default) a sample that
    would lose every modality keeps one of its present ones at random (a sample with no
    input has no prediction to score).
    """
    _check_data(data)
    mods = data.modalities
    targets = _targets(modalities, mods)
    probs = _per_modality("p", p, targets, check_probability)
    check_choice("keep_one", keep_one, (True, False))
    g = torch.Generator().manual_seed(check_int("seed", seed))
    n = len(data)
    present = data.present.clone()
    for m, pm in probs.items():
        drop = torch.rand(n, generator=g) < pm
        present[:, mods.index(m)] &= ~drop
    if keep_one:
        empty = ~present.any(1) & data.present.any(1)
        if empty.any():
            # restore one originally-present modality, chosen at random
            scores = torch.rand(n, len(mods), generator=g) * data.present
            pick = scores.argmax(1)
            present[empty, pick[empty]] = True
    x = {m: t * present[:, i].view(-1, *([1] * (t.ndim - 1))).to(t.dtype) for i, (m, t) in enumerate(data.x.items())}
    return _rebuild(data, x, present, missing=dict(probs))


def add_noise(data, level, seed: int = 0, modalities: Sequence[str] | None = None):
    """Add Gaussian noise of std ``level`` x (the modality's feature std) to targeted modalities.

    level: a float >= 0, {modality: float}, or a per-sample tensor [N] (one level per sample,
    used to study gates against per-sample corruption). Missing entries stay zero.
    """
    _check_data(data)
    mods = data.modalities
    targets = _targets(modalities, mods)
    n = len(data)
    if isinstance(level, Tensor):
        if level.shape != (n,) or not torch.isfinite(level).all() or (level < 0).any():
            raise ValueError(f"level as a per-sample tensor must be finite, >= 0 and of shape [N={n}], got "
                             f"shape {tuple(level.shape)}")
        levels = {m: level.float() for m in targets}
    else:
        levels = _per_modality("level", level, targets, check_nonnegative)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    x = dict(data.x)
    for m, lv in levels.items():
        t = data.x[m]
        std = t.float().reshape(-1, t.shape[-1]).std(0) if n > 1 else torch.ones(t.shape[-1])
        lv_t = torch.as_tensor(lv, dtype=torch.float32)
        lv_t = lv_t.view(-1, *([1] * (t.ndim - 1))) if lv_t.ndim == 1 else lv_t
        noise = torch.randn(t.shape, generator=g) * std * lv_t
        keep = data.present[:, mods.index(m)].view(-1, *([1] * (t.ndim - 1)))
        x[m] = (t.float() + noise * keep).to(t.dtype)
    info = {m: (float(v) if not isinstance(v, Tensor) else "per-sample") for m, v in levels.items()}
    return _rebuild(data, x, data.present, noise=info)


def _rebuild(data, x, present, **info):
    if isinstance(data, MultimodalDataset):
        return data._like(x, present, **info)
    if isinstance(data, Batch):
        return Batch(x, present, data.y, dict(data.factors))
    raise TypeError(f"data must be a MultimodalDataset or Batch, got {type(data).__name__}")
