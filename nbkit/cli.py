"""`nbkit reproduce`: execute every notebook in order with papermill, convert each to HTML,
and write ``report.html`` and ``claims.csv`` into ``runs/<timestamp>/`` (``runs/latest``
points at the newest run). A notebook that fails is reported with its error, the others
still run, and the command exits non-zero.

    nbkit reproduce                      # profile quick, each notebook's default seeds
    nbkit reproduce --profile full --seeds 0 1 2 3 4
    nbkit reproduce --only 00 03         # a subset, by number prefix or name
    nbkit list                           # the notebooks, in order
    nbkit strip-solutions notebooks/*.ipynb --out handout/   # exercises without their solutions
"""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .notebooks import find_notebooks, strip_solutions

__all__ = ["main", "reproduce", "find_notebooks", "NotebookResult"]


@dataclass
class NotebookResult:
    name: str
    status: str          # "ok" | "failed"
    seconds: float
    output: Path
    html: Path | None
    error: str = ""


def _to_html(ipynb: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    out = ipynb.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
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


def reproduce(profile: str = "quick", seeds: list[int] | None = None, notebooks: str | None = None,
              out: str | os.PathLike = "runs", only: list[str] | None = None, timeout: int | None = None,
              progress: bool = True, threads: int = 1) -> tuple[Path, list[NotebookResult]]:
    """Run the notebooks; return the run folder and one result per notebook.

    ``threads``: CPU threads of every notebook kernel (OMP/MKL/OpenBLAS), the run's one thread
    policy: 1 (default) makes every number independent of the machine's core count and is
    the fastest for these small models on a shared 2-core CPU (training alone is held to
    `TrainConfig.threads` anyway)."""
    import papermill as pm

    from .claims import COLUMNS

    if profile not in ("quick", "full"):
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    nbs = find_notebooks(notebooks, only)
    runs = Path(out).resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs / stamp
    k = 1
    while run_dir.exists():
        run_dir = runs / f"{stamp}-{k}"
        k += 1
    run_dir.mkdir(parents=True)
    _link_latest(runs, run_dir)
    claims = run_dir / "claims.csv"
    claims.write_text(",".join(COLUMNS) + "\n")
    os.environ["NBKIT_CLAIMS"] = str(claims)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(int(threads))
    # plotly figures embed plotly.js once per notebook so the HTML works offline
    os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
    params: dict = {"profile": profile}
    if seeds:
        params["seeds"] = [int(s) for s in seeds]
    results: list[NotebookResult] = []
    for i, nb in enumerate(nbs, 1):
        target = run_dir / nb.name
        if progress:
            print(f"[{i}/{len(nbs)}] {nb.name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        status, error = "ok", ""
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, cwd=str(nb.parent),
                                kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                                report_mode=False)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the rest still run
            status, error = "failed", _error_text(exc)
        seconds = time.perf_counter() - t0
        html_path = None
        if target.exists():
            try:
                html_path = _to_html(target)
            except Exception as exc:  # noqa: BLE001
                error = (error + "; " if error else "") + f"HTML conversion failed: {_error_text(exc)}"
        results.append(NotebookResult(nb.stem, status, seconds, target, html_path, error))
        if progress:
            print(f"{status} in {seconds:.1f}s" + (f"  ({error.splitlines()[0][:200]})" if error else ""), flush=True)
    write_report(run_dir, results, profile, params.get("seeds"))
    return run_dir, results


def write_report(run_dir: Path, results: list[NotebookResult], profile: str, seeds) -> Path:
    import pandas as pd

    from .claims import read_claims

    rows = []
    for r in results:
        link = f'<a href="{html.escape(r.html.name)}">{html.escape(r.name)}</a>' if r.html else html.escape(r.name)
        colour = "#1a7f37" if r.status == "ok" else "#cf222e"
        rows.append(f"<tr><td>{link}</td><td style='color:{colour};font-weight:bold'>{r.status}</td>"
                    f"<td>{r.seconds:.1f}</td><td><a href='{html.escape(r.output.name)}'>ipynb</a></td>"
                    f"<td><pre>{html.escape(r.error)}</pre></td></tr>")
    claims = read_claims(run_dir / "claims.csv")
    claims_html = claims.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="") if len(claims) else "<p>No claims recorded.</p>"
    n_ok = sum(r.status == "ok" for r in results)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>nbkit reproduction run</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}pre{{margin:0;white-space:pre-wrap}}</style></head><body>
<h1>nbkit reproduction run</h1>
<p>{html.escape(run_dir.name)} &middot; profile <b>{html.escape(profile)}</b> &middot; seeds {html.escape(str(seeds) if seeds else "notebook defaults")}
&middot; {n_ok}/{len(results)} notebooks ok &middot; {sum(r.seconds for r in results):.0f} s in all
&middot; python {sys.version.split()[0]}</p>
<h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>seconds</th><th>executed</th><th>error</th></tr>
{''.join(rows)}</table>
<h2>Claims (<a href="claims.csv">claims.csv</a>)</h2>{claims_html}
</body></html>"""
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    pd.DataFrame([{"notebook": r.name, "status": r.status, "seconds": round(r.seconds, 2), "error": r.error}
                  for r in results]).to_csv(run_dir / "notebooks.csv", index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nbkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("reproduce", help="execute every notebook with papermill; write report.html and claims.csv")
    rp.add_argument("--profile", choices=["quick", "full"], default="quick")
    rp.add_argument("--seeds", type=int, nargs="+", default=None, help="override every notebook's seeds")
    rp.add_argument("--notebooks", default=None, help="folder of notebooks (default: the repo's notebooks/)")
    rp.add_argument("--out", default="runs", help="where run folders go (default: runs/)")
    rp.add_argument("--only", nargs="+", default=None, help="notebook numbers or names to run (e.g. 00 03)")
    rp.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell")
    rp.add_argument("--threads", type=int, default=1,
                    help="CPU threads per notebook kernel (default 1: same numbers on any machine, fastest here)")
    sub.add_parser("list", help="list the notebooks in order")
    sp = sub.add_parser("strip-solutions", help="copies of notebooks without their solution cells (a hand-out)")
    sp.add_argument("notebooks", nargs="+", help="notebook files")
    sp.add_argument("--out", required=True, help="folder for the stripped copies (never the notebooks themselves)")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for p in find_notebooks():
            print(p.name)
        return 0
    if args.cmd == "strip-solutions":
        try:
            for nb in args.notebooks:
                out, n = strip_solutions(nb, Path(args.out))
                print(f"{out}: {n} solution cell(s) removed")
        except (ValueError, FileNotFoundError) as exc:
            print(f"nbkit strip-solutions: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        run_dir, results = reproduce(args.profile, args.seeds, args.notebooks, args.out, args.only, args.timeout,
                                     threads=args.threads)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nbkit reproduce: {exc}", file=sys.stderr)
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
