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

``-p NAME=VALUE`` (repeatable) is parsed as YAML like papermill's ``-y`` (``-p seeds=[0,1]``,
``-p data_dir=/x``, ``-p lr=1e-3``) and given to every selected notebook whose parameters
cell defines NAME; a NAME that no selected notebook defines is an error listing the ones
they have. Bad arguments exit with code 2 and a message; failed notebooks with code 1.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .notebooks import find_notebooks, notebook_parameters, strip_solutions

__all__ = ["main", "reproduce", "run_notebook", "parse_params", "find_notebooks", "NotebookResult"]


@dataclass
class NotebookResult:
    name: str
    status: str          # "ok" | "failed"
    seconds: float
    output: Path
    html: Path | None
    error: str = ""
    claims: object = field(default=None, repr=False)     # its claim rows (a DataFrame)


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


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()


def _link_latest(runs: Path, run_dir: Path) -> None:
    latest = runs / "latest"
    tmp = runs / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:  # filesystems without symlinks: write the path instead
        (runs / "latest.txt").write_text(str(run_dir))


@contextlib.contextmanager
def _environ(**values: str | None):
    """Set (or, with None, leave alone) environment variables for the kernels, restore after."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_notebook(nb: Path, target: Path, params: dict, claims_path: Path, timeout: int | None = None,
                 env: dict | None = None, run_dir: Path | None = None) -> NotebookResult:
    """Execute one notebook with papermill into ``target`` (its claim rows into
    ``claims_path``), convert it to an offline HTML page, and return its result. Never
    raises for a failing notebook: the failure is in the result."""
    import papermill as pm

    from .claims import read_claims
    from .report import export_html

    t0 = time.perf_counter()
    status, error = "ok", ""
    with _environ(NBKIT_CLAIMS=str(claims_path), **(env or {})):
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                                progress_bar=False, execution_timeout=timeout, report_mode=False)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the rest still run
            status, error = "failed", _error_text(exc)
    seconds = time.perf_counter() - t0
    html_path = None
    if target.exists():
        try:
            html_path = export_html(target, run_dir or target.parent)
        except Exception as exc:  # noqa: BLE001
            error = (error + "; " if error else "") + f"HTML conversion failed: {_error_text(exc)}"
    return NotebookResult(nb.stem, status, seconds, target, html_path, error, read_claims(claims_path))


def _check_args(profile, timeout, threads, out, data_dir):
    from ._checks import check_choice, check_int

    check_choice("--profile", profile, ("quick", "full"))
    if timeout is not None:
        check_int("--timeout (seconds per cell)", timeout, 1)
    check_int("--threads", threads, 1)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder for run folders, got {str(out)!r}, which is a file")
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise ValueError(f"--data-dir must be an existing folder (it becomes NBKIT_DATA), got {str(data_dir)!r}")
    return out, data_dir


def reproduce(profile: str = "quick", seeds: list[int] | None = None, notebooks: str | None = None,
              out: str | os.PathLike = "runs", only: list[str] | None = None, timeout: int | None = None,
              progress: bool = True, threads: int = 1, params: dict | None = None,
              data_dir: str | os.PathLike | None = None) -> tuple[Path, list[NotebookResult]]:
    """Run the notebooks; return the run folder and one result per notebook.

    ``params``: {name: value} given to every notebook whose parameters cell defines the name
    (a name none of them defines is an error). ``data_dir``: becomes ``NBKIT_DATA`` for the
    kernels, so every loader that reads user files looks there. ``threads``: CPU threads of
    every notebook kernel (OMP/MKL/OpenBLAS), the run's one thread policy: 1 (default) makes
    every number independent of the machine's core count and is fastest for these small
    models on a shared 2-core CPU (training alone is held to `TrainConfig.threads` anyway)."""
    from .claims import COLUMNS
    from .report import run_metadata, write_report

    out, data_dir = _check_args(profile, timeout, threads, out, data_dir)
    nbs = find_notebooks(notebooks, only)
    params = dict(params or {})
    defined = {nb: notebook_parameters(nb) for nb in nbs}
    known = sorted(set().union(*defined.values()))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"-p {', '.join(unknown)}: no selected notebook defines "
                         f"{'it' if len(unknown) == 1 else 'them'}; their parameters are {known}")
    runs = out.resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs / stamp
    k = 1
    while run_dir.exists():
        run_dir = runs / f"{stamp}-{k}"
        k += 1
    (run_dir / "claims").mkdir(parents=True)
    _link_latest(runs, run_dir)
    env = {"PLOTLY_RENDERER": "plotly_mimetype",       # figures as JSON; the pages share one plotly.js
           **{v: str(int(threads)) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
           "NBKIT_DATA": str(data_dir.resolve()) if data_dir is not None else None}
    results: list[NotebookResult] = []
    t_run = time.perf_counter()
    for i, nb in enumerate(nbs, 1):
        p = {"profile": profile, **({"seeds": [int(s) for s in seeds]} if seeds else {}),
             **{k: v for k, v in params.items() if k in defined[nb]}}
        if progress:
            print(f"[{i}/{len(nbs)}] {nb.name} ...", end=" ", flush=True)
        r = run_notebook(nb, run_dir / nb.name, p, run_dir / "claims" / f"{nb.stem}.csv", timeout, env, run_dir)
        results.append(r)
        if progress:
            print(f"{r.status} in {r.seconds:.1f}s" + (f"  ({r.error.splitlines()[0][:200]})" if r.error else ""),
                  flush=True)
    import pandas as pd

    frames = [r.claims for r in results if r.claims is not None and len(r.claims)]
    claims = pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
    claims.to_csv(run_dir / "claims.csv", index=False)                 # notebook order
    meta = run_metadata(profile, seeds, params, threads, env["NBKIT_DATA"])
    meta["wall time (whole run)"] = f"{time.perf_counter() - t_run:.0f} s"
    write_report(run_dir, results, meta, claims)
    return run_dir, results


def main(argv: list[str] | None = None) -> int:
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
    ls = sub.add_parser("list", help="list the notebooks in order, with their parameters")
    ls.add_argument("--notebooks", default=None, help="folder of notebooks (default: the repo's notebooks/)")
    sp = sub.add_parser("strip-solutions", help="copies of notebooks without their solution cells (a hand-out)")
    sp.add_argument("notebooks", nargs="+", help="notebook files")
    sp.add_argument("--out", required=True, help="folder for the stripped copies (never the notebooks themselves)")
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
        run_dir, results = reproduce(args.profile, args.seeds, args.notebooks, args.out, args.only, args.timeout,
                                     threads=args.threads, params=parse_params(args.param), data_dir=args.data_dir)
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
