"""Notebook files: finding them in order, reading their parameters, stripping solutions.

Exercises follow the template in docs/ARCHITECTURE.md: a markdown cell tagged ``exercise``,
then its solution in cells tagged ``solution`` (code hidden in JupyterLab, run by default
so papermill executes everything). `strip_solutions` removes the solution cells for a
hand-out, leaving an empty code cell "your answer" under each exercise.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

__all__ = ["REPO", "find_notebooks", "notebook_parameters", "strip_solutions", "solution_names_used_later"]

REPO = Path(__file__).resolve().parents[1]
ANSWER = "# Your answer here: predict first, then run, then explain what you see."


def find_notebooks(folder: str | os.PathLike | None = None, only: list[str] | None = None) -> list[Path]:
    """Notebooks in ``folder`` (default: the repo's notebooks/), sorted by their number prefix;
    ``only`` keeps those whose number or name is listed (an unknown one is an error)."""
    folder = Path(folder) if folder else REPO / "notebooks"
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {str(folder)!r} does not exist")
    nbs = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        wanted = [str(o) for o in only]
        match = (lambda p, w: p.stem == w or p.stem.startswith(w + "_") or p.name == w)
        missing = [w for w in wanted if not any(match(p, w) for p in nbs)]
        if missing:
            raise ValueError(f"--only names {missing} match no notebook in {folder}; have {[p.stem for p in nbs]}")
        nbs = [p for p in nbs if any(match(p, w) for w in wanted)]
    if not nbs:
        raise FileNotFoundError(f"no notebooks in {folder}")
    return nbs


def notebook_parameters(path: str | os.PathLike) -> dict:
    """{name: default value (or its source text when not a literal)} of the notebook's cell
    tagged ``parameters``."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    out = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[t.id] = ast.unparse(node.value)
    return out


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def strip_solutions(path: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, int]:
    """Write ``path`` without its cells tagged ``solution`` to ``out`` (a file, or a folder
    that gets the same file name); each removed run of solution cells becomes one empty code
    cell (tagged ``answer``) so the student has a place to work. Returns (written path,
    number of solution cells removed). Outputs are cleared."""
    import nbformat

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {str(path)!r} does not exist")
    if out.is_dir() or (not out.suffix and not out.exists()):
        out.mkdir(parents=True, exist_ok=True)
        out = out / path.name
    if out.resolve() == path.resolve():
        raise ValueError(f"out must differ from the notebook itself ({str(path)!r}); give a folder for the hand-out")
    nb = nbformat.read(str(path), as_version=4)
    cells, removed, in_solution = [], 0, False
    for c in nb.cells:
        if "solution" in _tags(c):
            removed += 1
            if not in_solution:
                cells.append(nbformat.v4.new_code_cell(ANSWER, metadata={"tags": ["answer"]}))
            in_solution = True
            continue
        in_solution = False
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
        cells.append(c)
    nb.cells = cells
    for i, c in enumerate(nb.cells):          # ids stay unique after the insertions
        c["id"] = f"cell-{i:02d}"
    nbformat.write(nb, str(out))
    return out, removed


def solution_names_used_later(path: str | os.PathLike) -> dict[str, list[str]]:
    """Names a solution cell assigns that a later NON-solution code cell reads: a stripped
    hand-out would fail there. {solution cell id: [names]} (empty when the notebook is safe)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    bad = {}
    for i, c in enumerate(code):
        if "solution" not in _tags(c):
            continue
        assigned = _assigned(c.source)
        later = set()
        for d in code[i + 1:]:
            if "solution" not in _tags(d):
                later |= _loaded(d.source) - _assigned_before_use(d.source)
        hits = sorted(assigned & later)
        if hits:
            bad[c.get("id", str(i))] = hits
    return bad


def _parse(src: str):
    lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _assigned(src: str) -> set[str]:
    names = set()
    for n in ast.walk(_parse(src)):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in n.names}
    return names


def _loaded(src: str) -> set[str]:
    return {n.id for n in ast.walk(_parse(src)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _assigned_before_use(src: str) -> set[str]:
    """Names a cell assigns at top level before it first reads them (its own, not inherited)."""
    own = set()
    for stmt in _parse(src).body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)):
            loads = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)} if getattr(stmt, "value", None) else set()
            targets = _assigned(ast.unparse(stmt))
            own |= targets - loads
    return own
