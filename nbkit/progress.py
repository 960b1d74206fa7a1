"""Progress bars that leave no stale state in an executed notebook.

tqdm's notebook bar is a widget: an executed notebook (papermill, nbconvert) keeps the
widget's text fallback as it was drawn FIRST ("0% 0/21"), or as it was left ("91% 64/70"
after early stopping), and a static copy shows that forever. `progress_bar` draws instead,
inside a Jupyter kernel, one line through a display handle, redrawn at most every
``every_s`` seconds and replaced at ``close()`` by what happened ("unimodal models: 21/21 in
14.2 s"); nbclient applies display updates to the saved output, so the executed notebook
keeps that last line. Outside a kernel (scripts, tests, the CLI) it is tqdm on stderr,
``leave=False``. Protocols of notebooks 00-03 use it; ``enabled=False`` draws nothing.
"""
from __future__ import annotations

import html
import time

__all__ = ["progress_bar", "in_notebook_kernel"]


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (a live notebook, or one papermill executes)."""
    try:
        from IPython import get_ipython
    except ImportError:                      # pragma: no cover - IPython ships with the notebook extra
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _HandleBar:
    """One display-handle line: ``desc: [####------] n/total (t s)``; ends as ``desc: n/total in t s``."""

    def __init__(self, total: int, desc: str, every_s: float):
        from IPython.display import display

        self.total, self.desc, self.every_s = int(total), str(desc), float(every_s)
        self.n, self.t0, self.closed = 0, time.perf_counter(), False
        self.last = self.t0                   # the first redraw comes every_s after the first draw
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def _text(self, final: bool = False) -> str:
        dt = time.perf_counter() - self.t0
        if final:
            return f"{self.desc}: {self.n}/{self.total} in {dt:.1f} s"
        width = 20
        done = int(width * self.n / self.total) if self.total else width
        return f"{self.desc}: [{'#' * done}{'-' * (width - done)}] {self.n}/{self.total} ({dt:.1f} s)"

    def _bundle(self, final: bool = False) -> dict:
        text = self._text(final)
        return {"text/plain": text,
                "text/html": f"<pre style='margin:0;color:#666'>{html.escape(text)}</pre>"}

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.handle.update(self._bundle(), raw=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handle.update(self._bundle(final=True), raw=True)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _Bar:
    """The object `progress_bar` returns: ``update(n=1)``, ``close()``, usable with ``with``."""

    def __init__(self, inner):
        self._inner = inner

    def update(self, n: int = 1) -> None:
        self._inner.update(n)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int, desc: str = "", enabled: bool = True, every_s: float = 0.5) -> _Bar:
    """A progress bar over ``total`` steps (see the module docstring): a display-handle line
    in a Jupyter kernel that ends as one summary line, tqdm elsewhere, nothing when
    ``enabled`` is False."""
    from ._checks import check_int, check_number

    total = check_int("total", total, 0)
    every_s = check_number("every_s", every_s, 0.0)
    if not enabled:
        return _Bar(_Silent())
    if in_notebook_kernel():
        return _Bar(_HandleBar(total, desc, every_s))
    from tqdm.std import tqdm

    return _Bar(tqdm(total=total, desc=desc, leave=False))
