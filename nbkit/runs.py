"""The reproduction run: every notebook executed by papermill, on this machine or on Ray.

One function runs one notebook (`execute_job`): it executes the notebook in a scratch folder
with its parameters and environment, and returns its status, time, error, claim rows and the
executed notebook itself. The local executor loops over it; the Ray executor submits it as a
task (``num_cpus``/``num_gpus`` per notebook) and collects results as they finish. Either way
the DRIVER writes every file (executed notebooks, offline HTML pages, report.html,
claims.csv in notebook order), so workers need no shared filesystem.

Pitfalls handled (and tested): a task with no GPU sees no GPU (``CUDA_VISIBLE_DEVICES=""``,
or the Trainer would pick GPU 0); each task writes claims to its own file; kernels and their
children are gone when a task ends; thread counts follow the task's CPUs; the code reaches
remote workers (Ray ``runtime_env`` working_dir, without runs/, .git/ and .venv/).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .notebooks import REPO, find_notebooks, notebook_parameters

__all__ = ["NotebookResult", "Job", "execute_job", "reproduce", "EXECUTORS"]

EXECUTORS = ("local", "ray")


@dataclass
class NotebookResult:
    name: str
    status: str          # "ok" | "failed"
    seconds: float
    output: Path
    html: Path | None
    error: str = ""
    claims: object = field(default=None, repr=False)     # its claim rows (a DataFrame)


@dataclass
class Job:
    """One notebook to run: its source (JSON text), parameters and kernel environment."""
    name: str
    source: str
    params: dict
    env: dict
    timeout: int | None = None


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()


@contextlib.contextmanager
def _environ(values: dict):
    """Set (None: leave alone) environment variables for the kernel, restore them after."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _reap_children(before: set[int]) -> int:
    """Kill processes this one started during the job that are still alive (a kernel left
    behind by a crash, a child of a kernel); returns how many."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with jupyter
        return 0
    me = psutil.Process()
    stray = [p for p in me.children(recursive=True) if p.pid not in before]
    for p in stray:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(stray, timeout=5)
    return len(stray)


def execute_job(job: Job) -> dict:
    """Run one notebook; never raises for a failing notebook. Returns a plain dict (it
    crosses process boundaries under Ray): name, status, seconds, error, claims (records),
    notebook (the executed .ipynb as text, or None), reaped (stray processes killed)."""
    import papermill as pm
    import psutil

    from .claims import read_claims

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with tempfile.TemporaryDirectory(prefix=f"nbkit-{job.name}-") as tmp:
        tmp = Path(tmp)
        src, out, claims = tmp / f"{job.name}.ipynb", tmp / f"{job.name}.out.ipynb", tmp / "claims.csv"
        src.write_text(job.source, encoding="utf-8")
        cwd = REPO / "notebooks" if (REPO / "notebooks").is_dir() else tmp
        status, error = "ok", ""
        t0 = time.perf_counter()
        # the kernel imports THIS checkout's nbkit (on a Ray worker: the uploaded working_dir)
        path = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        with _environ({**job.env, "NBKIT_CLAIMS": str(claims), "PYTHONPATH": path}):
            try:
                pm.execute_notebook(str(src), str(out), parameters=job.params, cwd=str(cwd), kernel_name="python3",
                                    progress_bar=False, execution_timeout=job.timeout, report_mode=False,
                                    start_timeout=300)           # a loaded machine starts kernels slowly
            except Exception as exc:  # noqa: BLE001 - every failure is reported, the rest still run
                status, error = "failed", _error_text(exc)
        seconds = time.perf_counter() - t0
        reaped = _reap_children(before)
        return {"name": job.name, "status": status, "seconds": seconds, "error": error,
                "claims": read_claims(claims).to_dict("records"),
                "notebook": out.read_text(encoding="utf-8") if out.exists() else None, "reaped": reaped}


# ------------------------------------------------------------------------- executors
def _run_local(jobs: list[Job], progress: bool):
    for job in jobs:
        if progress:
            print(f"[{job.name}] ...", end=" ", flush=True)
        r = execute_job(job)
        if progress:
            print(f"{r['status']} in {r['seconds']:.1f}s" + (f"  ({r['error'].splitlines()[0][:200]})"
                                                             if r["error"] else ""), flush=True)
        yield r


RUNTIME_EXCLUDES = ["runs/", "sweeps/", ".git/", ".venv/", "**/__pycache__/"]


def ray_init(address: str | None, env_vars: dict | None = None, attempts: int = 3) -> bool:
    """Start or join Ray (returns True when this call started it). With ``address`` the code
    reaches the workers as a runtime_env working_dir (this checkout without runs/ and .git/).
    A local start is retried: Ray's raylet gives its metrics agent a fixed 15 s to start
    (ray-project/ray#65983), which a loaded machine can miss."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {k: v for k, v in (env_vars or {}).items() if v is not None}}
    if address:
        runtime_env.update(working_dir=str(REPO), excludes=RUNTIME_EXCLUDES)
    kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    for attempt in range(1, int(attempts) + 1):
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=max(int(os.cpu_count() or 1), 1), **kw)
            return True
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on a startup timeout
            ray.shutdown()
            if address or attempt == attempts or "timed out during startup" not in str(exc):
                raise
            print(f"ray: the local node did not start in time (attempt {attempt}/{attempts}); retrying", flush=True)
    return False


def _run_ray(jobs: list[Job], progress: bool, address: str | None, gpus: float, cpus: float):
    import ray
    from tqdm.auto import tqdm

    started = ray_init(address)
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute_job)
        pending = {task.remote(job): job.name for job in jobs}
        bar = tqdm(total=len(pending), desc="notebooks (ray)", disable=not progress)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                name = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task that died is a failed notebook
                    r = {"name": name, "status": "failed", "seconds": 0.0, "error": f"ray task failed: {_error_text(exc)}",
                         "claims": [], "notebook": None, "reaped": 0}
                bar.update(1)
                bar.set_postfix_str(f"{name} {r['status']}")
                yield r
        bar.close()
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------ run
def _check_args(profile, timeout, threads, out, data_dir, executor, gpus, cpus):
    from ._checks import check_choice, check_int, check_number

    check_choice("--profile", profile, ("quick", "full"))
    check_choice("--executor", executor, EXECUTORS)
    if timeout is not None:
        check_int("--timeout (seconds per cell)", timeout, 1)
    check_int("--threads", threads, 1)
    check_number("--gpus-per-notebook", gpus, 0.0)
    check_number("--cpus-per-notebook", cpus, 0.0, lo_open=True)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder for run folders, got {str(out)!r}, which is a file")
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise ValueError(f"--data-dir must be an existing folder (it becomes NBKIT_DATA), got {str(data_dir)!r}")
    return out, data_dir


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


def _new_run_dir(runs: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, k = runs / stamp, 1
    while run_dir.exists():
        run_dir, k = runs / f"{stamp}-{k}", k + 1
    run_dir.mkdir(parents=True)
    _link_latest(runs, run_dir)
    return run_dir


def _write_notebook(run_dir: Path, nb: Path, r: dict) -> NotebookResult:
    """Write one job's executed notebook, its offline page and its claim rows into the run."""
    import pandas as pd

    from .claims import COLUMNS
    from .report import export_html

    target, html_path, error = run_dir / nb.name, None, r["error"]
    if r["notebook"] is not None:
        target.write_text(r["notebook"], encoding="utf-8")
        try:
            html_path = export_html(target, run_dir)
        except Exception as exc:  # noqa: BLE001
            error = (error + "; " if error else "") + f"HTML conversion failed: {_error_text(exc)}"
    claims = pd.DataFrame(r["claims"], columns=COLUMNS)
    claims.to_csv(run_dir / "claims" / f"{nb.stem}.csv", index=False)
    return NotebookResult(nb.stem, r["status"], r["seconds"], target, html_path, error, claims)


def reproduce(profile: str = "quick", seeds: list[int] | None = None, notebooks: str | None = None,
              out: str | os.PathLike = "runs", only: list[str] | None = None, timeout: int | None = None,
              progress: bool = True, threads: int = 1, params: dict | None = None,
              data_dir: str | os.PathLike | None = None, executor: str = "local", address: str | None = None,
              gpus_per_notebook: float = 0.0, cpus_per_notebook: float = 1.0) -> tuple[Path, list[NotebookResult]]:
    """Run the notebooks; return the run folder and one result per notebook (notebook order).

    ``params``: {name: value} given to every notebook whose parameters cell defines the name
    (a name none of them defines is an error). ``data_dir``: becomes ``NBKIT_DATA`` for the
    kernels, so every loader that reads user files looks there. ``threads``: CPU threads of
    every notebook kernel (OMP/MKL/OpenBLAS), the run's one thread policy: 1 (default) makes
    every number independent of the machine's core count and is fastest for these small
    models on a shared 2-core CPU; on Ray a kernel gets ``max(threads, cpus_per_notebook)``.
    ``executor``: "local" (one after the other, here) or "ray" (``address``: None starts a
    local Ray; "auto" or "ray://host:port" joins a cluster)."""
    import pandas as pd

    from .claims import COLUMNS
    from .report import run_metadata, write_report

    out, data_dir = _check_args(profile, timeout, threads, out, data_dir, executor, gpus_per_notebook,
                                cpus_per_notebook)
    nbs = find_notebooks(notebooks, only)
    params = dict(params or {})
    defined = {nb: notebook_parameters(nb) for nb in nbs}
    known = sorted(set().union(*defined.values()))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"-p {', '.join(unknown)}: no selected notebook defines "
                         f"{'it' if len(unknown) == 1 else 'them'}; their parameters are {known}")
    run_dir = _new_run_dir(out.resolve())
    (run_dir / "claims").mkdir()
    n_threads = max(int(threads), int(cpus_per_notebook)) if executor == "ray" else int(threads)
    env = {"PLOTLY_RENDERER": "plotly_mimetype",       # figures as JSON; the pages share one plotly.js
           **{v: str(n_threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
           "NBKIT_DATA": str(data_dir.resolve()) if data_dir is not None else None,
           # a notebook that asked for no GPU must not see one (CUDA would pick GPU 0 otherwise)
           "CUDA_VISIBLE_DEVICES": "" if executor == "ray" and not gpus_per_notebook else None}
    jobs = [Job(nb.stem, nb.read_text(encoding="utf-8"),
                {"profile": profile, **({"seeds": [int(s) for s in seeds]} if seeds else {}),
                 **{k: v for k, v in params.items() if k in defined[nb]}}, env, timeout) for nb in nbs]
    t_run = time.perf_counter()
    runner = (_run_local(jobs, progress) if executor == "local"
              else _run_ray(jobs, progress, address, gpus_per_notebook, cpus_per_notebook))
    by_name = {r["name"]: r for r in runner}
    results = [_write_notebook(run_dir, nb, by_name[nb.stem]) for nb in nbs]   # the driver writes, in order
    frames = [r.claims for r in results if len(r.claims)]
    claims = pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
    claims.to_csv(run_dir / "claims.csv", index=False)
    meta = run_metadata(profile, seeds, params, n_threads, env["NBKIT_DATA"])
    meta.update({"executor": executor + (f" ({address})" if address else ""),
                 "wall time (whole run)": f"{time.perf_counter() - t_run:.0f} s"})
    if executor == "ray":
        meta["resources per notebook"] = f"{cpus_per_notebook:g} CPU, {gpus_per_notebook:g} GPU"
    write_report(run_dir, results, meta, claims)
    return run_dir, results
