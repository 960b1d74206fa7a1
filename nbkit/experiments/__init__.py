"""Experiment protocols, one module per notebook (``nbNN_<topic>``: notebook NN's code):

| module | notebook |
|---|---|
| `nb00_data_tour` | 00 data tour |
| `nb01_residual` | 01 residual dual-stream decomposition (DSRSD-Net) |
| `nb02_decorrelation` | 02 decorrelation and orthogonality (DSRSD-Net) |
| `nb03_missing_modalities` | 03 gated fusion and missing modalities (DSRSD-Net) |
| `nb04_srcid` | 04 semantic residual quantization (SRCID, DCID, VQ/RVQ/FSQ) |
| `nb05_balance` | 05 modality balance (RedReg and the balance baselines) |
| `nb06_detection` | 06 gradient suppression in multimodal detection (RSC-MD) |
| `nb07_retrieval` | 07 decoupled alignment and distribution sampling for retrieval (CDDS) |
| `nb10_oulad` | 10 OULAD case study |

Each protocol takes the model's ``Config`` and a `nbkit.train.TrainConfig` whole and
returns tidy frames (one row per seed x setting x metric) for `nbkit.viz` and
`nbkit.claims`. The two pieces every protocol shares live here: `fit` (the one seeded
build-and-train helper) and `over_seeds`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

import pandas as pd

__all__ = ["over_seeds", "check_seeds", "fit", "as_config", "as_train_config"]


def over_seeds(fn: Callable[[int], Any], seeds: Iterable[int], desc: str = "seeds", progress: bool = True) -> pd.DataFrame:
    """Call ``fn(seed)`` for each seed; each call returns a dict (one row) or a list of dicts
    or a DataFrame. Returns all rows with a ``seed`` column, with a progress bar."""
    from ..progress import progress_bar

    seeds = check_seeds(seeds)
    frames = []
    with progress_bar(len(seeds), desc, enabled=progress) as bar:
        for s in seeds:
            r = fn(s)
            f = r if isinstance(r, pd.DataFrame) else pd.DataFrame([r] if isinstance(r, dict) else list(r))
            frames.append(f.assign(seed=s))
            bar.update(1)
    return pd.concat(frames, ignore_index=True)


def check_seeds(seeds) -> list[int]:
    """A non-empty list of integer seeds (the error names ``seeds``)."""
    from .._checks import check_int

    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a list of integers, got {seeds!r}")
    seeds = [check_int("seeds[i]", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    return seeds


def as_config(model_cls, config=None, **overrides):
    """``model_cls.Config`` from a Config instance (of that class or a parent: the fields they
    share are kept), a dict of overrides, or None (defaults); ``overrides`` win."""
    cls = model_cls.Config
    if config is None:
        base = {}
    elif isinstance(config, dict):
        base = dict(config)
    elif dataclasses.is_dataclass(config):
        names = {f.name for f in dataclasses.fields(cls)}
        base = {k: v for k, v in dataclasses.asdict(config).items() if k in names}
    else:
        raise TypeError(f"config must be a {cls.__name__}, a dict or None, got {type(config).__name__}")
    unknown = set({**base, **overrides}) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"unknown config fields {sorted(unknown)} for {model_cls.__name__}; "
                        f"known: {[f.name for f in dataclasses.fields(cls)]}")
    return cls(**{**base, **overrides})


def as_train_config(train_config=None, **overrides):
    """A `TrainConfig` from an instance, a dict or None; ``overrides`` win."""
    from ..train import TrainConfig

    if train_config is None:
        base = {}
    elif isinstance(train_config, dict):
        base = dict(train_config)
    elif isinstance(train_config, TrainConfig):
        base = dataclasses.asdict(train_config)
    else:
        raise TypeError(f"train_config must be a TrainConfig, a dict or None, got {type(train_config).__name__}")
    return TrainConfig(**{**base, **overrides})


def fit(model_cls, train, val=None, *, config=None, train_config=None, seed: int = 0, regulator=None,
        init_state: dict | None = None):
    """The one build-and-train helper: build ``model_cls`` for ``train`` with ``config`` (its
    Config, a dict of overrides, or None) after seeding torch with ``seed``, optionally load
    ``init_state`` (warm start), train with ``train_config`` (its ``seed`` is set to ``seed``;
    thread policy, early stopping etc. are the TrainConfig's), return ``(model, trainer)``."""
    import torch

    from .._checks import check_int
    from ..train import Trainer

    seed = check_int("seed", seed)
    tc = as_train_config(train_config, seed=seed)
    torch.manual_seed(seed)
    model = model_cls(train.dims(), train.n_classes, as_config(model_cls, config))
    if init_state is not None:
        model.load_state_dict(init_state)
    trainer = Trainer(model, tc, regulator=regulator)
    trainer.fit(train, val)
    return model, trainer
