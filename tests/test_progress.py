"""Progress lines that end as one summary line (nbkit.progress)."""
from __future__ import annotations

import pytest

import nbkit.progress as progress


class _FakeHandle:
    def __init__(self, log):
        self.log = log

    def update(self, obj, raw=False):
        assert raw
        self.log.append(("update", obj))


def test_kernel_bar_redraws_and_ends_as_one_summary_line(monkeypatch):
    log = []

    def fake_display(obj, raw=False, display_id=False):
        assert raw and display_id
        log.append(("display", obj))
        return _FakeHandle(log)

    monkeypatch.setattr(progress, "in_notebook_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", fake_display)
    with progress.progress_bar(3, "grid", every_s=0.0) as bar:
        for _ in range(3):
            bar.update()
    kinds = [k for k, _ in log]
    assert kinds == ["display", "update", "update", "update", "update"]      # first draw, 3 redraws, the close
    assert "0/3" in log[0][1]["text/plain"] and "[" in log[0][1]["text/plain"]
    final = log[-1][1]
    assert final["text/plain"].startswith("grid: 3/3 in ") and final["text/plain"].endswith(" s")
    assert "<pre" in final["text/html"] and "[" not in final["text/plain"]   # no bar left behind
    bar.close()                                                              # closing twice draws nothing new
    assert len(log) == 5


def test_kernel_bar_throttles_redraws(monkeypatch):
    log = []
    monkeypatch.setattr(progress, "in_notebook_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda obj, raw, display_id: (log.append(obj), _FakeHandle(log))[1])
    bar = progress.progress_bar(100, "many", every_s=3600.0)
    for _ in range(100):
        bar.update()
    bar.close()
    assert len(log) == 2          # the first draw and the close: no flood of messages


def test_silent_and_terminal_bars(capsys):
    with progress.progress_bar(2, "off", enabled=False) as bar:
        bar.update(2)
    assert capsys.readouterr().err == ""
    assert not progress.in_notebook_kernel()          # pytest is not a Jupyter kernel
    with progress.progress_bar(2, "tqdm") as bar:     # tqdm on stderr outside a kernel
        bar.update(2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="total must be an integer >= 0, got -1"):
        progress.progress_bar(-1)
    with pytest.raises(ValueError, match="every_s must be a finite number >= 0"):
        progress.progress_bar(3, every_s=-1.0)


@pytest.mark.notebooks
def test_executed_notebook_keeps_only_the_summary_line(tmp_path):
    """nbclient applies display updates to the saved output: no stale '0/3' bar survives."""
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("from nbkit.progress import progress_bar\n"
                                          "bar = progress_bar(3, 'steps', every_s=0.0)\n"
                                          "for _ in range(3):\n    bar.update()\nbar.close()")]
    src, out = tmp_path / "p.ipynb", tmp_path / "o.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False)
    outs = nbformat.read(out, as_version=4).cells[0].outputs
    texts = [o["data"]["text/plain"] for o in outs if o.get("output_type") == "display_data"]
    assert len(texts) == 1 and texts[0].startswith("steps: 3/3 in ")
    assert not any("widget" in k for o in outs for k in o.get("data", {}))
