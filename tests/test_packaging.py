"""The installable product: the wheel's contents, one version, honest dependencies, and a wheel
that trains from an empty folder.

The wheel is built once per module (``python -m build --no-isolation``: the venv's setuptools,
no network) into a temporary folder. The slow test installs it (``--no-deps``) into a fresh venv
that sees this venv's torch & co. through a ``.pth`` file, and trains from an empty folder with
``python -m ghostdet`` and the ``ghostdet`` script.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import ghostdet

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (3.10 has no TOML reader)

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        # sdist first, then the wheel from the unpacked sdist: a stale build/lib cannot leak in
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (found,) = out.glob("ghostdet-*.whl")
    return found


def _package_files(folder: str, *patterns: str) -> set[str]:
    root = REPO / "ghostdet"
    return {p.relative_to(REPO).as_posix() for pattern in patterns for p in (root / folder).glob(pattern)}


def test_wheel_holds_the_recipes_and_the_native_sources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = _package_files("config/recipes", "*.yaml")
    csrc = _package_files("deploy/csrc", "*")
    assert len(recipes) >= 10 and {"ghostdet/deploy/csrc/kernels.h", "ghostdet/deploy/csrc/dwconv.c"} <= csrc
    assert recipes <= names, sorted(recipes - names)
    assert csrc <= names, sorted(csrc - names)
    # every module of the package, and nothing from outside it (tests, tools, the configs/ link)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "ghostdet").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert {n.split("/")[0] for n in names} == {"ghostdet", wheel.name.split("-py3")[0] + ".dist-info"}


def test_wheel_metadata_is_pyprojects(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = z.read(meta_name).decode()
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    fields = [line.split(": ", 1) for line in meta.split("\n\n")[0].splitlines() if ": " in line]
    assert ["Version", ghostdet.__version__] in fields
    assert ["Requires-Python", PROJECT["requires-python"]] in fields
    requires = [v for k, v in fields if k == "Requires-Dist"]
    assert {_req_name(r) for r in requires if "extra ==" not in r} == {
        _req_name(r) for r in PROJECT["dependencies"]
    }
    assert {v for k, v in fields if k == "Provides-Extra"} == set(PROJECT["optional-dependencies"])
    assert re.search(r"^ghostdet = ghostdet\.cli\.main:main$", entry_points, re.M)


def test_one_version_read_statically() -> None:
    """The version lives in ghostdet/__init__.py only; setuptools reads it without importing ghostdet."""
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ghostdet.__version__"}
    code = (
        "import sys; from setuptools.config.expand import read_attr; "
        f"v = read_attr('ghostdet.__version__', root_dir={str(REPO)!r}); "
        "print(v, 'ghostdet' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [ghostdet.__version__, "False"]
    assert importlib.metadata.version("ghostdet") == ghostdet.__version__  # the installed copy agrees
    # no second copy of the version string in the files that describe the project
    for path in ("pyproject.toml", "setup.cfg", "README.md", "docs/install.md", "mkdocs.yml", "Makefile"):
        text = (REPO / path).read_text(encoding="utf-8") if (REPO / path).exists() else ""
        assert ghostdet.__version__ not in text, path


def test_requires_python_is_ruffs_target() -> None:
    """``types.UnionType`` and ``X | Y`` annotations resolved by typing.get_type_hints need 3.10."""
    assert PROJECT["requires-python"] == ">=3.10"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py310"


# -- declared dependencies <-> imports ------------------------------------------------------------

# import names whose distribution differs, when the distribution is not installed here
_DIST_OF = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml"}
# distributions used through another package's import path
_USED_VIA = {"tensorboard": "torch.utils.tensorboard"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9._-]+", req).group(0))


@functools.cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    top = module.split(".")[0]
    installed = _installed().get(top)
    return _norm(installed[0] if installed else _DIST_OF.get(top, top))


def _imports(root: Path) -> dict[str, set[str]]:
    """Third-party modules imported under ``root`` -> {"required", "optional"}: required at module
    level, optional inside a function or a ``try`` (a path that runs only when asked for)."""
    found: dict[str, set[str]] = {}

    def visit(node: ast.AST, optional: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = optional or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            else:
                names = []
            for name in names:
                if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "ghostdet":
                    found.setdefault(name, set()).add("optional" if inner else "required")
            visit(child, inner)

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _extras() -> dict[str, set[str]]:
    return {k: {_req_name(r) for r in v} for k, v in PROJECT["optional-dependencies"].items()}


def test_package_imports_are_declared_and_declared_dependencies_are_imported() -> None:
    core = {_req_name(r) for r in PROJECT["dependencies"]}
    extras = _extras()
    optional = set().union(*(v for k, v in extras.items() if k not in ("dev", "docs")))
    imports = _imports(REPO / "ghostdet")
    used: set[str] = set()
    for module, how in imports.items():
        dist = _distribution(module)
        used.add(dist)
        if "required" in how:  # imported when its module is: a core dependency
            assert dist in core, f"{module} is imported at module level but {dist} is not a dependency"
        else:
            assert dist in core | optional, f"{module} is imported but {dist} is declared nowhere"
    used |= {dist for dist, via in _USED_VIA.items() if via in imports}
    assert core <= used, f"declared but never imported by ghostdet: {sorted(core - used)}"
    assert optional <= used, f"extras nothing imports: {sorted(optional - used)}"
    assert optional.isdisjoint(core)


def test_dev_extra_runs_the_tests_and_builds_the_docs() -> None:
    extras = _extras()
    dev_reqs = PROJECT["optional-dependencies"]["dev"]
    (self_ref,) = [r for r in dev_reqs if _req_name(r) == "ghostdet"]
    included = set(re.search(r"\[(.*)\]", self_ref).group(1).split(","))
    assert included == set(extras) - {"dev"}  # every other extra
    test_imports = {_distribution(m) for m in _imports(REPO / "tests")} - {"tests", "helpers"}
    test_imports = {d for d in test_imports if not d.startswith("test-")}
    have = {"ghostdet"} | {_req_name(r) for r in PROJECT["dependencies"]} | extras["dev"]
    have |= set().union(*(extras[e] for e in included))
    assert test_imports <= have, sorted(test_imports - have)
    assert {"pytest", "ruff", "build"} <= extras["dev"]  # the runner, `make lint`, the wheel build here
    mkdocs = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert "name: material" in mkdocs and "mkdocstrings" in mkdocs
    assert {"mkdocs-material", "mkdocstrings"} <= extras["docs"]


# -- the installed wheel, from an empty folder ----------------------------------------------------


def _fresh_venv(root: Path) -> Path:
    """A venv without pip that sees this venv's site-packages (torch, ...) after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # a path line, not this venv's .pth files: its editable ghostdet stays out of the new venv
    Path(purelib, "zz_host_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_installed_wheel_trains_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TORCH_HOME"] = str(tmp_path / "torch_home")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=empty, env=env, timeout=900)

    where = run(
        str(python),
        "-c",
        "import ghostdet, importlib.metadata as m; from ghostdet.config.detection import CONFIG_DIR; "
        "print(ghostdet.__file__); print(m.version('ghostdet')); print(len(list(CONFIG_DIR.glob('*.yaml'))))",
    )
    assert where.returncode == 0, where.stderr
    file, version, recipes = where.stdout.split()
    assert Path(file).is_relative_to(tmp_path / "venv") and not Path(file).is_relative_to(REPO)
    assert version == ghostdet.__version__
    assert int(recipes) == len(_package_files("config/recipes", "*.yaml"))

    synthetic = tmp_path / "synthetic"
    common = [
        "train",
        "--detector",
        "retinanet_320",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--synthetic-root",
        str(synthetic),
        "--set",
        "synthetic.num_train=8",
        "--set",
        "synthetic.num_val=4",
        "--set",
        "synthetic.image_size=96",
    ]
    for name, launcher in (
        ("module", [str(python), "-m", "ghostdet"]),
        ("script", [str(python.parent / "ghostdet")]),
    ):
        out = tmp_path / f"run_{name}"
        r = run(*launcher, *common, "--output-dir", str(out))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert (out / "checkpoint.pth").is_file()
        (evaluation,) = json.loads((out / "metrics.json").read_text())["evaluations"]
        assert evaluation["epoch"] == 1 and evaluation["val_images_evaluated"] == 4, evaluation
    assert sorted(p.name for p in empty.iterdir()) == []  # nothing written into the working folder
