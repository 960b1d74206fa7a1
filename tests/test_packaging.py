"""The set-up files agree with each other: pyproject.toml, environment.yml, Makefile, README, .ci/run."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENV = yaml.safe_load((ROOT / "environment.yml").read_text())


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_core_dependencies_named_by_the_user_are_declared():
    deps = {_name(d) for d in PYPROJECT["project"]["dependencies"]}
    for pkg in ["torch", "jupyterlab", "ipywidgets", "plotly", "umap-learn", "seaborn", "papermill", "nbval",
                "numpy", "pandas", "scikit-learn", "tqdm"]:
        assert pkg in deps, pkg


def test_torch_is_pinned_to_the_local_cpu_build_everywhere():
    torch_reqs = [d for d in PYPROJECT["project"]["dependencies"] if _name(d) == "torch"]
    assert torch_reqs == ["torch==2.13.0"]
    pip_section = next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "torch==2.13.0" in pip_section
    assert "pip install -q torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_environment_yml_installs_this_package_and_agrees_with_pyproject():
    assert ENV["name"] == "nbkit" and "conda-forge" in ENV["channels"]
    conda = [d for d in ENV["dependencies"] if isinstance(d, str)]
    pip_section = next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert any(re.fullmatch(r"-e \.(\[[a-z,]+\])?", p) for p in pip_section), "pip section must install this package"
    extras = re.search(r"-e \.\[([a-z,]+)\]", " ".join(pip_section))
    if extras:
        assert set(extras.group(1).split(",")) <= set(PYPROJECT["project"]["optional-dependencies"])
    py = next(d for d in conda if d.startswith("python"))
    major_minor = tuple(int(v) for v in py.split("=")[1].split(".")[:2])
    floor = tuple(int(v) for v in re.search(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups())
    assert major_minor >= floor
    # conda must not install a second, differently-pinned copy of a pip dependency
    pinned_by_pip = {_name(d) for d in PYPROJECT["project"]["dependencies"]}
    assert not ({_name(c) for c in conda} - {"python", "pip"}) & pinned_by_pip


def test_readme_quick_start_gives_exactly_the_two_commands_and_ci_calls_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```(?:bash|sh)?\n(.*?)```", readme, re.S)
    assert block, "README needs a Quick start code block"
    cmds = [l for l in block.group(1).splitlines() if l.strip() and not l.strip().startswith("#")]
    assert cmds == ["make reproduce", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    make = (ROOT / "Makefile").read_text()
    for target in ("reproduce:", "test:", "lab:"):
        assert target in make
