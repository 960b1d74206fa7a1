"""`nbkit reproduce`: execute every notebook in order with papermill, convert each to an
offline HTML page, and write ``report.html`` and ``claims.csv`` into ``runs/<timestamp>/``
(``runs/latest`` points at the newest run). A notebook that fails is reported with its
error, the others still run, and the command exits 1.

    nbkit reproduce                          # profile quick, each notebook's default seeds
    nbkit reproduce --profile full --seeds 0 1 2 3 4
    nbkit reproduce --only 00 03             # a subset, by number prefix or name
    nbkit reproduce --only 10 --data-dir ~/oulad          # your data (sets NBKIT_DATA)
    nbkit reproduce --only 10 -p data_dir=~/oulad -p cutoff_week=4   # any notebook parameter
    nbkit list                               # the notebooks, in order, with their parameters
    nbkit strip-solutions notebooks/*.ipynb --out handout/   # exercises without their solutions
    nbkit reproduce --executor ray [--address auto] [--gpus-per-notebook 0.5]   # one Ray task per notebook
    nbkit sweep lambda-grid --grid lambda_dec=0,0.01,1 --grid lambda_orth=0,1 --seeds 0 1 2 [--executor ray]

``-p NAME=VALUE`` (repeatable) is parsed as YAML like papermill's ``-y`` (``-p seeds=[0,1]``,
``-p data_dir=/x``, ``-p lr=1e-3``) and given to every selected notebook whose parameters
cell defines NAME; a NAME that no selected notebook defines is an error listing the ones
they have. Bad arguments exit with code 2 and a message; failed notebooks with code 1.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from .notebooks import find_notebooks, notebook_parameters, strip_solutions
from .runs import EXECUTORS, NotebookResult, reproduce

__all__ = ["main", "reproduce", "parse_params", "find_notebooks", "NotebookResult"]


def parse_params(items: list[str] | None) -> dict:
    """``["a=1", "b=[0, 1]", "c=x"]`` -> ``{"a": 1, "b": [0, 1], "c": "x"}`` (values as YAML)."""
    import yaml

    out = {}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"-p must be NAME=VALUE with NAME a parameter name, got {item!r}")
        try:
            v = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ValueError(f"-p {name}: the value {value!r} is not valid YAML ({exc.__class__.__name__})") from None
        if isinstance(v, str):               # YAML 1.1 reads 1e-3 as a string; a user means the number
            try:
                v = float(v) if not v.lstrip("+-").isdigit() else int(v)
            except ValueError:
                pass
        out[name] = v
    return out


def parse_grid(items: list[str] | None) -> dict:
    """``["lambda_dec=0,0.01,1", "method=joint,RedReg"]`` -> {"lambda_dec": [0, 0.01, 1], "method": [...]}
    (each value read as YAML, as with -p)."""
    grid = {}
    for item in items or []:
        name, sep, values = str(item).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values.strip():
            raise ValueError(f"--grid must be NAME=V1,V2,... with NAME a setting, got {item!r}")
        grid[name] = [parse_params([f"{name}={v}"])[name] for v in values.split(",")]
    return grid


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nbkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("reproduce", help="execute every notebook with papermill; write report.html and claims.csv")
    rp.add_argument("--profile", choices=["quick", "full"], default="quick")
    rp.add_argument("--seeds", type=int, nargs="+", default=None, help="override every notebook's seeds")
    rp.add_argument("--notebooks", default=None, help="folder of notebooks (default: the repo's notebooks/)")
    rp.add_argument("--out", default="runs", help="folder that receives the run folders (default: runs/)")
    rp.add_argument("--only", nargs="+", default=None, help="notebook numbers or names to run (e.g. 00 03)")
    rp.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: no limit)")
    rp.add_argument("--threads", type=int, default=1,
                    help="CPU threads per notebook kernel (default 1: same numbers on any machine, fastest here)")
    rp.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter, value parsed as YAML; repeatable (e.g. -p data_dir=/x -p epochs=5)")
    rp.add_argument("--data-dir", default=None, help="folder with your data files; becomes NBKIT_DATA for every loader")
    rp.add_argument("--executor", choices=EXECUTORS, default="local",
                    help="local: one notebook after the other here (default); ray: one Ray task per notebook")
    rp.add_argument("--address", default=None,
                    help="with --executor ray: 'auto' or 'ray://host:port' to join a cluster (default: start a local Ray)")
    rp.add_argument("--gpus-per-notebook", type=float, default=0.0, help="with --executor ray: GPUs per notebook task")
    rp.add_argument("--cpus-per-notebook", type=float, default=1.0, help="with --executor ray: CPUs per notebook task")
    ls = sub.add_parser("list", help="list the notebooks in order, with their parameters")
    ls.add_argument("--notebooks", default=None, help="folder of notebooks (default: the repo's notebooks/)")
    sw = sub.add_parser("sweep", help="a grid x seeds over an experiment protocol; writes sweep.csv, a figure, claims")
    sw.add_argument("experiment", help="lambda-grid (notebook 02) or balance (notebook 05); see nbkit.sweep.EXPERIMENTS")
    sw.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="a swept setting and its values (YAML each); repeatable: the grid is their product")
    sw.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    sw.add_argument("--executor", choices=EXECUTORS, default="local",
                    help="local: trials in this process (default); ray: Ray Tune, one trial per task")
    sw.add_argument("--address", default=None, help="with --executor ray: 'auto' or 'ray://host:port'")
    sw.add_argument("--gpus-per-trial", type=float, default=0.0, help="with --executor ray: GPUs per trial")
    sw.add_argument("--out", default="sweeps", help="folder that receives the sweep folders (default: sweeps/)")
    sp = sub.add_parser("strip-solutions", help="copies of notebooks without their solution cells (a hand-out)")
    sp.add_argument("notebooks", nargs="+", help="notebook files")
    sp.add_argument("--out", required=True, help="folder for the stripped copies (never the notebooks themselves)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            for p in find_notebooks(args.notebooks):
                print(f"{p.name}: {', '.join(notebook_parameters(p))}")
            return 0
        if args.cmd == "strip-solutions":
            for nb in args.notebooks:
                out, n = strip_solutions(nb, Path(args.out))
                print(f"{out}: {n} solution cell(s) removed")
            return 0
        if args.cmd == "sweep":
            from .sweep import sweep

            folder = sweep(args.experiment, grid=parse_grid(args.grid), seeds=args.seeds, executor=args.executor,
                           out=args.out, gpus_per_trial=args.gpus_per_trial, address=args.address,
                           progress=True)
            print(f"\nsweep: {folder / 'sweep.csv'}\nfigure: {folder / 'sweep.html'}\nclaims: {folder / 'claims.csv'}")
            return 0
        if args.executor == "local" and (args.address or args.gpus_per_notebook or args.cpus_per_notebook != 1.0):
            raise ValueError("--address, --gpus-per-notebook and --cpus-per-notebook need --executor ray")
        run_dir, results = reproduce(args.profile, args.seeds, args.notebooks, args.out, args.only, args.timeout,
                                     threads=args.threads, params=parse_params(args.param), data_dir=args.data_dir,
                                     executor=args.executor, address=args.address,
                                     gpus_per_notebook=args.gpus_per_notebook, cpus_per_notebook=args.cpus_per_notebook)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"nbkit {args.cmd}: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status != "ok"]
    print(f"\nreport: {run_dir / 'report.html'}\nclaims: {run_dir / 'claims.csv'}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(r.name for r in failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
