"""nbkit: shared vs private multimodal representation learning, explained in notebooks.

Submodules are imported lazily so that ``import nbkit`` stays cheap (torch, sklearn and
plotly load only when a submodule that needs them is first touched)::

    import nbkit
    ds = nbkit.data.make_synthetic(n=2000, seed=0)   # imports nbkit.data (and torch) now
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "data", "nn", "losses", "models", "regulate", "train", "evaluate", "viz",
    "widgets", "claims", "cli", "experiments",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"nbkit.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nbkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
