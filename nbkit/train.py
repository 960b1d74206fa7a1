"""One training loop for every method: `Trainer`, `History`, checkpoints.

- device: CUDA when present, else CPU (``device="auto"``); bf16 autocast on CUDA only.
- seeding: ``seed_everything`` plus one ``torch.Generator`` per run for shuffling, so the
  same seed gives the same numbers on CPU, run after run.
- loss: ``model.loss_terms`` returns UNWEIGHTED named terms; weights come from
  ``model.loss_weights()`` (the model's config) and the regulator's ``weights``.
- a `Regulator` acts between ``backward()`` and ``step()`` and returns diagnostics, which
  are logged per step into the History.
- early stopping on a validation metric; the best state is kept in memory (and written
  atomically to ``checkpoint`` when given) and restored at the end.
"""
from __future__ import annotations

import copy
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ._checks import check_choice, check_int, check_number
from .data.batch import MultimodalDataset

__all__ = ["TrainConfig", "Trainer", "History", "TrainingDiverged", "seed_everything", "pick_device",
           "save_checkpoint", "load_checkpoint", "cpu_threads"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a fresh generator for this run's shuffling."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no CUDA device is available; use device='auto'")
    return dev


class cpu_threads:
    """Run torch (and numpy/sklearn BLAS) on ``n`` CPU threads inside the block, restoring the
    caller's settings after; ``n=None`` changes nothing. The Trainer's ``threads`` setting
    uses it: these models are tiny, and on a busy 2-core machine a second OpenMP thread mostly
    spins (we measured a DSRSD step at ~4 ms on 1 thread and 18-75 ms on 2 threads while other
    jobs shared the cores)."""

    def __init__(self, n: int | None = 1):
        self.n = check_int("threads", n, 1, none_ok=True)

    def __enter__(self):
        self.prev = torch.get_num_threads()
        self._limits = None
        if self.n is not None:
            try:  # taken BEFORE torch's change so that it records the caller's thread counts
                from threadpoolctl import threadpool_limits
                self._limits = threadpool_limits(self.n)
            except ImportError:  # pragma: no cover
                pass
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()
        torch.set_num_threads(self.prev)      # last: the caller's torch setting wins
        return False


# ---------------------------------------------------------------------------- History
class History:
    """Tidy training log: one row per (step, epoch, split, metric, value)."""

    COLUMNS = ("step", "epoch", "split", "metric", "value")

    def __init__(self, rows: Iterable[tuple] | None = None):
        self._rows: list[tuple] = list(rows or [])
        self._frame: pd.DataFrame | None = None

    def log(self, step: int, epoch: int, split: str, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            if isinstance(v, Tensor):
                v = v.detach().float().item()
            if v is None:
                continue
            self._rows.append((int(step), int(epoch), split, str(k), float(v)))
        self._frame = None

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame(self._rows, columns=list(self.COLUMNS))
        return self._frame

    def __len__(self) -> int:
        return len(self._rows)

    def metrics(self, split: str | None = None) -> list[str]:
        f = self.frame if split is None else self.frame[self.frame.split == split]
        return sorted(f.metric.unique())

    def curve(self, metric: str, split: str = "val", by: str = "epoch") -> pd.Series:
        f = self.frame[(self.frame.metric == metric) & (self.frame.split == split)]
        if f.empty:
            raise KeyError(f"no {split!r} values of {metric!r} logged; have {self.metrics(split)}")
        return f.groupby(by)["value"].mean()

    def last(self, metric: str, split: str = "val") -> float:
        return float(self.curve(metric, split).iloc[-1])

    def best(self, metric: str, split: str = "val", mode: str = "max") -> float:
        c = self.curve(metric, split)
        return float(c.max() if mode == "max" else c.min())

    def to_dict(self) -> dict:
        return {c: [r[i] for r in self._rows] for i, c in enumerate(self.COLUMNS)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(zip(*(d[c] for c in cls.COLUMNS)))

    def __repr__(self) -> str:
        return f"History({len(self)} rows, metrics={self.metrics()})"


# ------------------------------------------------------------------------ checkpoints
def _model_identity(model: torch.nn.Module) -> dict:
    """What a checkpoint must agree on before its weights may load into ``model``."""
    ident = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        ident["config"] = model.config.to_dict()
    if hasattr(model, "modalities"):
        ident["modalities"] = list(model.modalities)
    if hasattr(model, "dims"):
        ident["dims"] = {m: list(d) for m, d in model.dims.items()}
    if hasattr(model, "n_classes"):
        ident["n_classes"] = int(model.n_classes)
    return ident


def _check_plain(name: str, v) -> None:
    """Only values that ``torch.load(weights_only=True)`` reads back (else the file saves but
    never loads)."""
    if v is None or isinstance(v, (bool, int, float, str, Tensor)):
        return
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_plain(f"{name}[{i}]", x)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            _check_plain(f"{name}[{k!r}]", x)
        return
    raise TypeError(f"{name} must be a plain value (number, string, bool, None, tensor, or a list/dict of "
                    f"them) so the checkpoint loads with weights_only=True, got {type(v).__name__}; "
                    f"convert it first (e.g. float(x), x.tolist())")


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer=None, **meta) -> Path:
    """Write atomically: a temp file in the same folder, then ``os.replace``.

    The file carries the weights, the model's identity (class, config, modality order and
    per-modality shapes, number of classes), the nbkit version and ``meta``, which must hold
    plain python values (numbers, strings, lists, dicts) so the file loads with
    ``torch.load(weights_only=True)``.
    """
    from . import __version__

    for k, v in meta.items():
        _check_plain(f"meta[{k!r}]", v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ident = _model_identity(model)
    state = {"model": model.state_dict(), "meta": meta, "identity": ident, "nbkit_version": __version__}
    if "config" in ident:
        state["config"] = ident["config"]
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None, map_location="cpu") -> dict:
    """Load with ``weights_only=True`` (no arbitrary code); fill ``model`` when given.

    Before any weight is copied, the checkpoint's model identity (class, config, modality
    order, shapes, classes) is compared with ``model``'s: a difference is a ValueError that
    lists what differs (a model built with its modalities in another order would otherwise
    load silently and mix up the encoders)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder; pass the checkpoint file's path")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file gets the same clear error
        raise ValueError(f"checkpoint {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
                         f"is it a file written by nbkit.train.save_checkpoint?") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {str(path)!r} is not an nbkit checkpoint (no 'model' entry)")
    if model is not None:
        saved = state.get("identity")
        if saved is None:
            raise ValueError(f"checkpoint {str(path)!r} carries no model identity (written before nbkit "
                             f"checkpoints recorded class, config and modality order); it cannot be checked "
                             f"against {type(model).__name__}")
        now = _model_identity(model)
        diffs = []
        for k in sorted(set(saved) | set(now)):
            a, b = saved.get(k), now.get(k)
            if k == "config" and isinstance(a, dict) and isinstance(b, dict):
                diffs += [f"config.{f}: checkpoint {a.get(f)!r} vs model {b.get(f)!r}"
                          for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
            elif a != b:
                diffs.append(f"{k}: checkpoint {a!r} vs model {b!r}")
        if diffs:
            raise ValueError(f"checkpoint {str(path)!r} does not match this model:\n  " + "\n  ".join(diffs))
        model.load_state_dict(state["model"])
    return state


# ---------------------------------------------------------------------------- Trainer
@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adamw"           # "adamw" | "adam" | "sgd"
    momentum: float = 0.9              # sgd only
    patience: int | None = None        # epochs without improvement before stopping; None = off
    monitor: str = "acc"               # validation metric for early stopping / best state
    mode: str = "max"
    seed: int = 0
    device: str = "auto"
    amp: bool = True                   # bf16 autocast, CUDA only
    grad_clip: float | None = None     # max global gradient norm; None = off
    checkpoint: str | None = None      # path of the best checkpoint (atomic writes)
    restore_best: bool = True
    progress: bool = True
    drop_last: bool = True
    eval_batch_size: int = 1024
    threads: int | None = 1            # CPU threads while training (1: fastest for these small models
                                       # on a shared 2-core CPU, measured); None leaves torch's setting

    def __post_init__(self):
        self.epochs = check_int("epochs", self.epochs, 1)
        self.batch_size = check_int("batch_size", self.batch_size, 2)   # batch statistics need 2 samples
        self.lr = check_number("lr", self.lr, 0.0, lo_open=True)
        self.weight_decay = check_number("weight_decay", self.weight_decay, 0.0)
        self.optimizer = check_choice("optimizer", self.optimizer, ("adamw", "adam", "sgd"))
        self.momentum = check_number("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        self.patience = check_int("patience", self.patience, 0, none_ok=True)
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ValueError(f"monitor must be the name of a validation metric (e.g. 'acc', 'auc'), got {self.monitor!r}")
        self.mode = check_choice("mode", self.mode, ("max", "min"))
        self.seed = check_int("seed", self.seed)
        if str(self.device) != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from None
        self.grad_clip = check_number("grad_clip", self.grad_clip, 0.0, lo_open=True, none_ok=True)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, 1)
        self.threads = check_int("threads", self.threads, 1, none_ok=True)
        for flag in ("amp", "restore_best", "progress", "drop_last"):
            check_choice(flag, getattr(self, flag), (True, False))      # "no" would count as True
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path (str) or None, got {self.checkpoint!r}")


class TrainingDiverged(FloatingPointError):
    """A loss term or a parameter became NaN/inf. The message names the term(s), their
    weights and the likely cause; the model was restored to its best (or initial) state."""


class Trainer:
    """Train any `MultimodalModel` (optionally with a `Regulator`) on a `MultimodalDataset`."""

    def __init__(self, model, config: TrainConfig | None = None, regulator=None, **overrides):
        from .regulate import Regulator

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (an nbkit model), got {type(model).__name__}")
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        config = config or TrainConfig()
        if overrides:
            unknown = set(overrides) - {f.name for f in fields(config)}
            if unknown:
                raise TypeError(f"unknown TrainConfig fields {sorted(unknown)}; known: {[f.name for f in fields(config)]}")
            config = TrainConfig(**{**asdict(config), **overrides})
        if regulator is not None and not isinstance(regulator, Regulator):
            raise TypeError(f"regulator must be an nbkit.regulate.Regulator, got {type(regulator).__name__}")
        self.config = config
        self.model = model
        self.regulator = regulator if regulator is not None else Regulator()   # the do-nothing one
        self.device = pick_device(config.device)
        self.history = History()
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.step = 0
        self.train_time_s = 0.0
        self.samples_seen = 0

    # -- pieces ------------------------------------------------------------------
    def make_optimizer(self):
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(self.model).__name__} has no trainable parameters")
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        # the fused kernel: one update for all tensors (measured here: +13% samples/s for
        # DSRSD, +24% for early fusion on the CPU); falls back where it is not supported
        if all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
            try:
                return cls(params, lr=c.lr, weight_decay=c.weight_decay, fused=True)
            except (RuntimeError, TypeError):
                pass
        return cls(params, lr=c.lr, weight_decay=c.weight_decay)

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def loss_weights(self) -> dict[str, float]:
        """Every term's weight: the model config's (``lambda_<term>``), then the regulator's."""
        return {**self.model.loss_weights(), **self.regulator.weights}

    def weighted_loss(self, terms: dict[str, Tensor], extra_weights: dict[str, float] | None = None) -> Tensor:
        """sum_k w_k term_k over the terms whose weight is not 0 (weights: `loss_weights`,
        then ``extra_weights``). A NaN/inf term raises `TrainingDiverged` (see `_diverged`)."""
        w = {**self.loss_weights(), **(extra_weights or {})}
        # one reduction and one sync in the common case; the per-term check only on failure
        if not bool(torch.isfinite(sum(v.detach().float().sum() for v in terms.values()))):
            bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
            if bad:
                self._diverged(terms, w, bad)
        total = None
        for k, v in terms.items():
            wk = w.get(k, 1.0)
            if wk == 0:
                continue
            total = v * wk if total is None else total + v * wk
        return total if total is not None else sum(terms.values())

    # -- divergence ----------------------------------------------------------------
    def _diverged(self, terms: dict[str, Tensor] | None, weights: dict[str, float], bad: list[str],
                  cause: str | None = None):
        """Restore the best (else the initial) state, then raise `TrainingDiverged` naming the
        non-finite terms, every term's weight and the likely cause: the term whose WEIGHTED
        value was largest at the last finite step (a diverging term poisons every other one
        within a step, so the first non-finite name is rarely the culprit)."""
        c = self.config
        where = f"at step {self.step} (epoch {self._epoch})"
        what = ", ".join(f"{k}={float(terms[k].detach().float().mean()) if terms else float('nan')}" for k in bad) \
            if terms else "parameters"
        last = self._last_weighted or {}
        culprit = max(last, key=lambda k: abs(last[k])) if last else (bad[0] if bad else None)
        wname = (lambda k: "weight 1 (the task term)" if k == "task" else f"lambda_{k}={weights.get(k, 1.0):g}")
        lines = [f"training diverged {where}: "
                 + ("loss term(s) " + what if terms else
                    f"a value inside the model became NaN/inf ({cause})" if cause else "a parameter became NaN/inf")
                 + "."]
        if last:
            lines.append("weighted terms at the last finite step: "
                         + ", ".join(f"{k}={v:.3g} ({wname(k)})" for k, v in last.items()) + ".")
        if culprit is not None and culprit != "task":
            lines.append(f"likely cause: the term {culprit!r} with {wname(culprit)} dominates the loss; "
                         f"lower lambda_{culprit} (or the learning rate lr={c.lr:g}, or set grad_clip).")
        else:
            lines.append(f"likely cause: the learning rate lr={c.lr:g} is too high for this model/optimizer "
                         f"({c.optimizer}); lower it or set grad_clip.")
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            lines.append(f"the model was restored to its best state (epoch {self.best_epoch}).")
        elif self._init_state is not None:
            self.model.load_state_dict(self._init_state)
            lines.append("the model was restored to its state before training (no validated epoch yet).")
        raise TrainingDiverged(" ".join(lines))

    def _check_parameters(self) -> None:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            self._diverged(None, self.loss_weights(), [])

    # -- main loop ---------------------------------------------------------------
    def fit(self, train: MultimodalDataset, val: MultimodalDataset | None = None) -> History:
        """for each epoch: for each batch: forward, terms, backward, regulate, step;
        validate; stop early; then restore the best state."""
        from tqdm.auto import tqdm

        c, model, reg = self.config, self.model, self.regulator
        self._check_data(train, val)
        g = seed_everything(c.seed)
        model.to(self.device)
        self.optimizer = self.make_optimizer()
        reg.attach(model, self)
        self._best, self._best_state, self._bad_epochs, self._epoch = None, None, 0, 0
        self._init_state = copy.deepcopy(model.state_dict())
        self._last_weighted: dict[str, float] = {}
        n_batches = train.n_batches(c.batch_size, c.drop_last)
        bar = tqdm(total=c.epochs * n_batches, disable=not c.progress, desc=type(model).__name__, leave=False)
        t0 = time.perf_counter()
        try:
            with cpu_threads(c.threads if self.device.type == "cpu" else None):
                for epoch in range(c.epochs):
                    self._epoch = epoch
                    model.train()
                    reg.on_epoch_start(epoch, c.epochs)
                    for batch in train.batches(c.batch_size, shuffle=True, generator=g, drop_last=c.drop_last):
                        loss = self._step(batch, epoch)
                        bar.update(1)
                        bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", refresh=False)
                    self._check_parameters()
                    self.history.log(self.step, epoch, "train",
                                     {f"reg/{k}": v for k, v in (reg.on_epoch_end(epoch) or {}).items()})
                    if val is not None and self._validate(val, epoch):
                        self.stopped_epoch = epoch
                        bar.total = bar.n          # stopped early: the bar ends full, not "91% 64/70"
                        bar.refresh()
                        break
        finally:
            bar.close()
            self.train_time_s += time.perf_counter() - t0
        if c.restore_best and self._best_state is not None:
            model.load_state_dict(self._best_state)
        elif c.checkpoint and val is None:
            save_checkpoint(c.checkpoint, model, epoch=c.epochs - 1)
        return self.history

    def _check_data(self, train, val) -> None:
        if not isinstance(train, MultimodalDataset):
            raise TypeError(f"train must be a MultimodalDataset, got {type(train).__name__}")
        if len(train) < 2:
            raise ValueError(f"train must hold at least 2 samples, got {len(train)}")
        if val is not None:
            if not isinstance(val, MultimodalDataset):
                raise TypeError(f"val must be a MultimodalDataset or None, got {type(val).__name__}")
            if len(val) == 0:
                raise ValueError("val must hold at least 1 sample (or pass val=None to train without validation)")
            if val.modalities != train.modalities:
                raise ValueError(f"val's modalities {list(val.modalities)} differ from train's {list(train.modalities)}")
        # before the first step, not after an epoch: shapes, labels, loss weights, the monitored metric
        dims = getattr(self.model, "dims", None)
        for name, ds in (("train", train), ("val", val)):
            if ds is not None and isinstance(dims, dict):
                bad = {m: s for m, s in ds.dims().items() if m in dims and tuple(s) != tuple(dims[m])}
                if bad:
                    m = next(iter(bad))
                    raise ValueError(f"{name}.x[{m!r}] has per-sample shape {bad[m]}, the model was built for {dims[m]}")
        n_classes = getattr(self.model, "n_classes", None)
        for name, ds in (("train", train), ("val", val)):
            if ds is None or n_classes is None:
                continue
            if ds.y.is_floating_point():
                raise TypeError(f"{name}.y must hold integer class labels for {type(self.model).__name__} "
                                f"(a classifier), got {ds.y.dtype}")
            lo, hi = int(ds.y.min()), int(ds.y.max())
            if lo < 0 or hi >= n_classes:
                raise ValueError(f"{name}.y must hold class labels in 0..{n_classes - 1} (the model's n_classes="
                                 f"{n_classes}), got labels from {lo} to {hi}")
        for k, w in self.loss_weights().items():
            check_number("weight 1 of the task term" if k == "task" else f"lambda_{k}", w, 0.0)
        m = self.config.monitor
        if val is not None and m not in ("acc", "auc") and not m.startswith(("acc/", "loss/")):
            raise KeyError(f"monitor={m!r} is not among the validation metrics ('acc', 'auc', 'acc/<modality>', "
                           f"'loss/<term>')")

    def _step(self, batch, epoch: int) -> float:
        """One optimisation step: forward, terms, backward, regulate, step; log. Returns the loss."""
        c, model, reg, opt = self.config, self.model, self.regulator, self.optimizer
        batch = reg.prepare_batch(batch.to(self.device), epoch)
        try:
            with self._autocast():
                out = model(batch)
                terms = model.loss_terms(batch, out)
                terms.update(reg.extra_terms(batch, out))
        except ValueError as exc:
            # a NaN/inf that the input checks of a loss catch INSIDE the model, while the
            # batch itself is finite, is divergence (weights or activations blew up), not bad input
            inputs_ok = all(bool(torch.isfinite(batch.x[m][batch.mask(m)]).all()) for m in batch.modalities)
            params_bad = any(not bool(torch.isfinite(p).all()) for p in model.parameters())
            if inputs_ok and (params_bad or "must be finite" in str(exc)):
                self._diverged(None, self.loss_weights(), [], cause=str(exc).split(";")[0])
            raise
        loss = self.weighted_loss(terms)
        opt.zero_grad(set_to_none=True)
        if not reg.backward(loss, terms, batch, out):
            loss.backward()
        diag = reg.after_backward(batch, out, terms)
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        reg.after_step()
        self.step += 1
        self.samples_seen += len(batch)
        vals = torch.stack([loss.detach().float()] + [v.detach().float() for v in terms.values()]).tolist()
        w = self.loss_weights()
        self._last_weighted = {k: v * w.get(k, 1.0) for k, v in zip(terms, vals[1:]) if w.get(k, 1.0) != 0}
        row = {"loss": vals[0], **{f"loss/{k}": v for k, v in zip(terms, vals[1:])}}
        row.update({f"reg/{k}": v for k, v in (diag or {}).items()})
        self.history.log(self.step, epoch, "train", row)
        return vals[0]

    def _validate(self, val: MultimodalDataset, epoch: int) -> bool:
        """Score ``val``, keep the best state (and checkpoint); True when it is time to stop."""
        c = self.config
        metrics = self.evaluate(val)
        self.history.log(self.step, epoch, "val", metrics)
        score = metrics.get(c.monitor)
        if score is None:
            raise KeyError(f"monitor={c.monitor!r} is not among validation metrics {sorted(metrics)}")
        if self._best is None or (score > self._best if c.mode == "max" else score < self._best):
            self._best, self._bad_epochs, self.best_epoch = score, 0, epoch
            self._best_state = copy.deepcopy(self.model.state_dict())
            if c.checkpoint:
                save_checkpoint(c.checkpoint, self.model, epoch=epoch, best=float(score), monitor=c.monitor)
            return False
        self._bad_epochs += 1
        return c.patience is not None and self._bad_epochs > c.patience

    @torch.no_grad()
    def evaluate(self, ds: MultimodalDataset) -> dict[str, float]:
        from .evaluate import classification_metrics, collect

        if not isinstance(ds, MultimodalDataset) or len(ds) == 0:
            raise ValueError(f"evaluate needs a non-empty MultimodalDataset, got "
                             f"{type(ds).__name__ if not isinstance(ds, MultimodalDataset) else 'an empty one'}")
        res = collect(self.model, ds, batch_size=self.config.eval_batch_size, device=self.device, with_terms=True)
        metrics = classification_metrics(res["logits"], res["y"])
        for m, lg in res.get("unimodal_logits", {}).items():
            metrics[f"acc/{m}"] = classification_metrics(lg, res["y"])["acc"]
        metrics.update({f"loss/{k}": v for k, v in res.get("terms", {}).items()})
        return metrics
