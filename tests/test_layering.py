"""The package's layering: every subpackage imports only itself and the layers below it.

Lowest first; a module of one layer may import modules of its own layer's packages only when
they are the same package (no package of a layer imports another of the same layer):

    errors  ->  utils  ->  models  ->  data  ->  deploy (ONNX export, runtimes, int8)  ->  config
    ->  evaluation  ->  engine
    ->  analysis, predict  ->  cli

The imports are read from the source (every ``import`` statement, including those inside
functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ghostdet"

LAYERS: list[set[str]] = [
    {"errors"},
    {"utils"},
    {"models"},
    {"data"},
    {"deploy"},  # int8 calibration reads images with ghostdet.data
    {"config"},
    {"evaluation"},
    {"engine"},
    {"analysis", "predict"},
    {"cli"},
    {"__main__"},  # python -m ghostdet: the ghostdet command
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The layer unit of a module file: its top-level package (or module) under ghostdet/."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "ghostdet":  # "from ghostdet import models"
                names |= {f"ghostdet.{a.name}" for a in node.names}
    return {n.split(".")[1] for n in names if n.startswith("ghostdet.")}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in _modules()}
    assert units <= set(LEVEL), f"place these in LAYERS: {sorted(units - set(LEVEL))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    me = _unit(path)
    for other in _imports(path) - {me}:
        assert other in LEVEL, f"{path.name} imports ghostdet.{other}, which has no layer"
        assert LEVEL[other] < LEVEL[me], (
            f"{path.relative_to(PACKAGE)} ({me}, layer {LEVEL[me]}) imports ghostdet.{other} "
            f"(layer {LEVEL[other]}): imports must point down"
        )


def test_the_library_knows_nothing_of_the_cli() -> None:
    """No library module imports ghostdet.cli (the CLI translates parameters into flags)."""
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if _unit(p) not in ("cli", "__main__") and "cli" in _imports(p)
    ]
    assert offenders == []


@pytest.mark.parametrize("unit", sorted(LEVEL))
def test_each_package_imports_nothing_above_it(unit: str) -> None:
    """Importing a package in a fresh interpreter loads no module of a higher layer."""
    code = (
        f"import importlib, sys; importlib.import_module('ghostdet.{unit}'); "
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules if m.startswith('ghostdet.')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    above = {u for u in loaded if u in LEVEL and LEVEL[u] > LEVEL[unit]}
    assert above == set(), f"importing ghostdet.{unit} loads {sorted(above)}"


def test_backbones_do_not_import_detectors() -> None:
    models = PACKAGE / "models"
    for name in ("ghostnet", "ghostnetv2", "ghostnetv3", "fpn", "dfc"):
        tree = ast.parse((models / f"{name}.py").read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not mods & {
            "ghostdet.models.detection",
            "ghostdet.models.retinanet_head",
            "ghostdet.models.atss",
        }, name
