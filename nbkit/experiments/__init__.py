"""Experiment protocols the notebooks call: one function per experiment, returning tidy
frames (one row per seed x setting x metric) that `nbkit.viz` draws.

Submodules, one per paper: ``dsrsd``, ``balance`` (RedReg and the balance baselines),
``oulad``. Shared pieces live here.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import pandas as pd

__all__ = ["over_seeds", "fit"]


def over_seeds(fn: Callable[[int], Any], seeds: Iterable[int], desc: str = "seeds", progress: bool = True) -> pd.DataFrame:
    """Call ``fn(seed)`` for each seed; each call returns a dict (one row) or a list of dicts
    or a DataFrame. Returns all rows with a ``seed`` column, with a progress bar."""
    from tqdm.auto import tqdm

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    frames = []
    for s in tqdm(seeds, desc=desc, disable=not progress, leave=False):
        r = fn(s)
        f = r if isinstance(r, pd.DataFrame) else pd.DataFrame([r] if isinstance(r, dict) else list(r))
        frames.append(f.assign(seed=s))
    return pd.concat(frames, ignore_index=True)


def fit(model_cls, train, val=None, seed: int = 0, regulator=None, model_kwargs: dict | None = None,
        init_state: dict | None = None, **train_kwargs):
    """Build ``model_cls`` for ``train`` (seeded), optionally load ``init_state`` (warm start),
    train it on one CPU thread (these models are tiny; see `nbkit.train.one_thread`), and
    return ``(model, trainer)``."""
    import torch

    from ..train import Trainer, one_thread

    torch.manual_seed(int(seed))
    model = model_cls.for_dataset(train, **(model_kwargs or {}))
    if init_state is not None:
        model.load_state_dict(init_state)
    trainer = Trainer(model, regulator=regulator, seed=int(seed), **train_kwargs)
    with one_thread(trainer.device.type == "cpu"):
        trainer.fit(train, val)
    return model, trainer
