"""`nbkit sweep`: a grid x seeds over an experiment protocol, in this process or on Ray Tune.

    nbkit sweep lambda-grid --grid lambda_dec=0,0.01,1 --grid lambda_orth=0,1 --seeds 0 1 2
    nbkit sweep balance --grid method=joint,OGM-GE,RedReg --grid lr=0.01,0.02 --executor ray

Each trial (one grid point, one seed) builds the experiment's data (deterministic, cached per
process), trains and scores one model through the notebook's own protocol, and returns its
metrics. Locally the trials run one after the other on one CPU thread each; with
``--executor ray`` they are Ray Tune trials (one CPU, ``--gpus-per-trial`` GPUs each, one
thread: the same numbers as locally). Both write into ``sweeps/<timestamp>-<experiment>/``:

- ``sweep.csv``: tidy, one row per (grid point, seed, metric);
- ``sweep.html``: the grid as a figure (offline, plotly.js in ``_static``);
- ``claims.csv``: every grid point against the first (the baseline), paired by seed, on the
  experiment's main metric, through `nbkit.claims.claim`.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import pandas as pd

__all__ = ["Experiment", "EXPERIMENTS", "run_trial", "sweep", "tidy"]


@dataclass(frozen=True)
class Experiment:
    name: str
    notebook: str
    paper: str
    data: Callable[[], tuple]            # -> (train, val, test), deterministic
    trial: Callable[..., dict]           # (data, params, seed) -> {metric: value}
    settings: Callable[[], set]          # names a grid may sweep
    metric: str                          # the main metric of the claim rows
    direction: str = "greater"


# --------------------------------------------------------------------- lambda grid (02)
@functools.lru_cache(maxsize=None)
def _lambda_data():
    from .experiments.nb02_decorrelation import make_data

    return make_data(n=2000, seed=0)


def _split(params: dict, model_cls, base_model: dict, base_train: dict) -> tuple[dict, dict]:
    from .train import TrainConfig

    model_fields = {f.name for f in dataclasses.fields(model_cls.Config)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed"}
    model, train = dict(base_model), dict(base_train)
    for k, v in params.items():
        if k in model_fields:
            model[k] = v
        elif k in train_fields:
            train[k] = v
        else:
            raise ValueError(f"unknown setting {k!r} for this sweep")
    return model, train


def _lambda_trial(data, params: dict, seed: int) -> dict:
    from .evaluate import stream_diagnostics
    from .experiments import fit
    from .experiments.nb02_decorrelation import TRAIN
    from .models.dsrsd import DSRSD

    train, _, test = data
    model_cfg, train_cfg = _split(params, DSRSD, {"d": 32, "hidden": 64}, TRAIN)
    model, _ = fit(DSRSD, train, None, seed=seed, config=model_cfg, train_config=train_cfg)
    return stream_diagnostics(model, test, seed=seed)


def _lambda_settings() -> set:
    from .models.dsrsd import DSRSD
    from .train import TrainConfig

    return ({f.name for f in dataclasses.fields(DSRSD.Config)} | {f.name for f in dataclasses.fields(TrainConfig)}) - {"seed"}


# ------------------------------------------------------------------------- balance (05)
@functools.lru_cache(maxsize=None)
def _balance_data():
    from .experiments.nb05_balance import make_setting

    return make_setting("avdigits", image_noise=1.0, n=1500, seed=0)


def _balance_trial(data, params: dict, seed: int) -> dict:
    from .experiments import nb05_balance as B
    from .models import EarlyFusion

    params = dict(params)
    method = params.pop("method", "joint")
    model_cfg, train_cfg = _split(params, EarlyFusion, B.MODEL, B.TRAIN)
    row, _ = B.run_method(method, data, seed, config=model_cfg, train_config=train_cfg)
    return {k: v for k, v in row.items() if k not in ("method", "ms_step", "epochs")}   # timings vary run to run


def _balance_settings() -> set:
    from .models import EarlyFusion
    from .train import TrainConfig

    return ({"method"} | {f.name for f in dataclasses.fields(EarlyFusion.Config)}
            | {f.name for f in dataclasses.fields(TrainConfig)}) - {"seed"}


EXPERIMENTS: dict[str, Experiment] = {
    "lambda-grid": Experiment("lambda-grid", "02", "DSRSD-Net (arXiv 2512.07568)", _lambda_data, _lambda_trial,
                              _lambda_settings, metric="disentanglement"),
    "balance": Experiment("balance", "05", "RedReg (arXiv 2511.13755)", _balance_data, _balance_trial,
                          _balance_settings, metric="acc"),
}


def run_trial(experiment: str, params: dict, seed: int) -> dict:
    """One trial on one CPU thread: the experiment's metrics for ``params`` and ``seed``."""
    from .train import cpu_threads

    exp = EXPERIMENTS[experiment]
    with cpu_threads(1):
        return {k: float(v) for k, v in exp.trial(exp.data(), dict(params), int(seed)).items()
                if isinstance(v, (int, float))}


# --------------------------------------------------------------------------- executors
def _points(grid: dict) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def _run_local(experiment, grid, seeds, progress) -> list[dict]:
    from tqdm.auto import tqdm

    jobs = [(p, s) for p in _points(grid) for s in seeds]
    rows = []
    for p, s in tqdm(jobs, desc=f"sweep {experiment}", disable=not progress):
        rows.append({**p, "seed": s, **run_trial(experiment, p, s)})
    return rows


def _tune_trainable(config: dict) -> None:
    from ray import tune

    params = {k: v for k, v in config.items() if not k.startswith("_") and k != "seed"}
    tune.report(run_trial(config["_experiment"], params, config["seed"]))


def _run_ray(experiment, grid, seeds, gpus, address, progress) -> list[dict]:
    import ray
    from ray import tune

    from .runs import ray_init

    # one thread per trial (the same numbers as the local sweep); no GPU for a trial that asked for none
    started = ray_init(address, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                 "CUDA_VISIBLE_DEVICES": "" if not gpus else None})
    try:
        space = {**{k: tune.grid_search(list(v)) for k, v in grid.items()}, "seed": tune.grid_search(list(seeds)),
                 "_experiment": experiment}
        with tempfile.TemporaryDirectory(prefix="nbkit-tune-") as storage:
            tuner = tune.Tuner(tune.with_resources(_tune_trainable, {"cpu": 1, "gpu": float(gpus)}),
                               param_space=space,
                               run_config=tune.RunConfig(storage_path=storage, name=experiment,
                                                         verbose=1 if progress else 0))
            result = tuner.fit()
            errors = [str(r.error) for r in result if r.error]
            if errors:
                raise RuntimeError(f"{len(errors)} Ray Tune trial(s) failed; first: {errors[0][:500]}")
            df = result.get_dataframe()
    finally:
        if started:
            ray.shutdown()
    metrics = [c for c in df.columns if not c.startswith("config/") and c not in _TUNE_BOOKKEEPING]
    return [{**{k: r[f"config/{k}"] for k in grid}, "seed": int(r["config/seed"]), **{m: r[m] for m in metrics}}
            for _, r in df.iterrows()]


_TUNE_BOOKKEEPING = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
                     "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
                     "iterations_since_restore", "logdir", "should_checkpoint", "experiment_tag"}


# ------------------------------------------------------------------------------ sweep
def tidy(rows: list[dict], grid: dict) -> pd.DataFrame:
    """One row per (grid point, seed, metric), sorted, the point numbered as ``trial``."""
    wide = pd.DataFrame(rows)
    names = list(grid)
    order = {tuple(p.values()): i for i, p in enumerate(_points(grid))}
    wide["trial"] = [order[tuple(r[n] for n in names)] for r in wide.to_dict("records")]
    long = wide.melt(id_vars=["trial", *names, "seed"], var_name="metric", value_name="value")
    return long.sort_values(["trial", "seed", "metric"]).reset_index(drop=True)[["trial", *names, "seed", "metric",
                                                                                  "value"]]


def _check(experiment, grid, seeds, executor, gpus):
    from ._checks import check_choice, check_int, check_number

    check_choice("experiment", experiment, list(EXPERIMENTS))
    check_choice("--executor", executor, ("local", "ray"))
    check_number("--gpus-per-trial", gpus, 0.0)
    if not grid:
        raise ValueError("--grid must name at least one setting, e.g. --grid lambda_dec=0,0.01,1")
    allowed = EXPERIMENTS[experiment].settings()
    unknown = sorted(set(grid) - allowed)
    if unknown:
        raise ValueError(f"--grid {', '.join(unknown)}: not a setting of {experiment!r}; its settings are {sorted(allowed)}")
    for k, v in grid.items():
        if not v or len(set(map(str, v))) != len(v):
            raise ValueError(f"--grid {k}: give distinct values, got {v}")
    seeds = [check_int("--seeds", s) for s in seeds]
    if len(seeds) < 1:
        raise ValueError("--seeds must hold at least one seed")
    return seeds


def sweep(experiment: str, grid: dict[str, list], seeds=(0, 1, 2), executor: str = "local",
          out: str | os.PathLike = "sweeps", gpus_per_trial: float = 0.0, address: str | None = None,
          progress: bool = True) -> Path:
    """Run the grid x seeds; write sweep.csv, sweep.html and claims.csv; return the folder."""
    from .claims import claim
    from .report import install_static

    seeds = _check(experiment, grid, seeds, executor, gpus_per_trial)
    exp = EXPERIMENTS[experiment]
    if executor == "local":
        rows = _run_local(experiment, grid, seeds, progress)
    else:
        rows = _run_ray(experiment, grid, seeds, gpus_per_trial, address, progress)
    frame = tidy(rows, grid)
    folder = Path(out).expanduser().resolve() / f"{datetime.now():%Y%m%d-%H%M%S}-{experiment}"
    k = 1
    while folder.exists():
        folder, k = folder.with_name(f"{folder.name}-{k}"), k + 1
    folder.mkdir(parents=True)
    frame.to_csv(folder / "sweep.csv", index=False)
    main = frame[frame.metric == exp.metric]
    points = _points(grid)
    names = list(grid)
    dataset = exp.data()[0].describe()
    rows = [claim(main, paper=exp.paper, by=names, value="value", treatment=tuple(p.values()),
                  control=tuple(points[0].values()), direction=exp.direction, dataset=dataset,
                  claim=f"sweep {experiment}: this setting {'raises' if exp.direction == 'greater' else 'lowers'} "
                        f"{exp.metric} compared with the first grid point",
                  reference=f"nbkit sweep (ours), notebook {exp.notebook}'s protocol", record=False)
            for p in points[1:]]
    (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()).to_csv(folder / "claims.csv", index=False)
    from .viz import sweep_figure

    install_static(folder)
    fig = sweep_figure(frame, names, exp.metric, title=f"nbkit sweep {experiment}: {exp.metric} "
                                                       f"(mean ± std over {len(seeds)} seeds)")
    body = fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
    (folder / "sweep.html").write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>sweep {experiment}'
                                       f'</title><script src="_static/plotly.min.js"></script></head><body>{body}'
                                       f'</body></html>', encoding="utf-8")
    return folder
