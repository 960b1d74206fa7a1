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


def test_torch_is_a_range_for_users_and_2_13_0_is_installed_first_here():
    from packaging.specifiers import SpecifierSet

    torch_reqs = [d for d in PYPROJECT["project"]["dependencies"] if _name(d) == "torch"]
    assert len(torch_reqs) == 1
    spec = SpecifierSet(torch_reqs[0][len("torch"):])
    # a range: the local build satisfies it (so pip keeps it), and so do other releases
    assert "2.13.0" in spec and "2.4.1" in spec and "2.13.1" in spec and "3.0.0" not in spec
    assert not any(s.operator == "==" for s in spec)
    # the set-up here installs the local CPU build BEFORE the package, in both recipes
    pip_section = next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "torch==2.13.0" in pip_section
    assert pip_section.index("torch==2.13.0") < next(i for i, p in enumerate(pip_section) if p.startswith("-e ."))
    make = (ROOT / "Makefile").read_text()
    assert make.index("pip install -q torch==2.13.0") < make.index('pip install -q -e ".[dev]"')


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
    assert "$(ARGS)" in make.split("reproduce: setup", 1)[1].splitlines()[1]   # make reproduce ARGS="..."


def test_the_repository_stands_alone():
    """No file points outside the repository (the notes it needs are in docs/)."""
    import subprocess

    files = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split()
    bad = []
    for f in files:
        if not f.endswith((".py", ".md", ".ipynb", ".toml", ".yml", ".cfg", ".txt")) or f == "tests/test_packaging.py":
            continue
        text = (ROOT / f).read_text(errors="ignore")
        if "../shared" in text or "/work/shared" in text or re.search(r"\bspecs/\w+\.md", text):
            bad.append(f)
    assert bad == []
    for link in re.findall(r"\]\(((?:docs|data)/[^)#]+)\)", (ROOT / "README.md").read_text()):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
