"""Build a clean notebook from a percent-format script (the way notebooks here are authored).

    python scripts/py2nb.py src.py notebooks/NN_name.ipynb

Cells start with ``# %%`` (code), ``# %% [markdown]`` (markdown, each line prefixed "# ")
or ``# %% tags=["parameters"]`` (the papermill parameters cell). The result has no
outputs, no widget state and kernelspec python3.
"""
from __future__ import annotations

import re
import sys

import nbformat


def convert(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    blocks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(blocks[1::2], blocks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            cell = nbformat.v4.new_code_cell(body)
            tags = re.findall(r'"([^"]+)"', header) if "tags" in header else []
            if tags:
                cell.metadata["tags"] = tags
            nb.cells.append(cell)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    nbformat.write(convert(open(sys.argv[1]).read()), sys.argv[2])
