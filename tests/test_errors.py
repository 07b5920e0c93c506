"""The error hierarchy: user errors are GhostdetErrors (one line, exit 2), anything else is a bug.

A bug that raises a builtin ``ValueError`` or ``OSError`` inside a tool's library call keeps its
traceback and exits with 1 (Python's status for an uncaught exception), never the 2 of a user
error; a :class:`~ghostdet.errors.GhostdetError` raised at the same place is one line and 2.
Every exception class the package defines for users derives from ``GhostdetError`` (checked by
walking every module), keeping the builtin base its callers rely on.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ghostdet
from ghostdet.cli.errors import USER_ERROR_STATUS, ToolError, run_tool
from ghostdet.errors import ArgumentError, CheckpointError, GhostdetError, InputError, OutputError

REPO = Path(__file__).resolve().parents[1]

#: Exception classes of the package that are not errors in the user's input, and why.
NOT_USER_ERRORS = {
    # how a training run ended (the loss diverged); run_training_job reports it with exit status 1
    "ghostdet.engine.run.NonFiniteLossError",
    # SIGTERM delivered as a KeyboardInterrupt, so that a run stops like on Ctrl-C
    "ghostdet.engine.signals.Terminated",
}


# --------------------------------------------------------------- a bug vs a user error in a tool
_INJECT = """
import runpy, sys
import ghostdet.predict.infer as infer
from ghostdet.errors import GhostdetError

def broken(*args, **kwargs):
    raise {raised}

infer.run_infer = broken  # before the tool imports it
sys.argv = ["infer.py", *{argv!r}]
runpy.run_path({tool!r}, run_name="__main__")
"""


def _run_infer_raising(raised: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """tools/infer.py in a fresh interpreter, its library call (``run_infer``) raising ``raised``."""
    argv = [str(tmp_path / "best.pth"), str(tmp_path / "photo.jpg"), "--output-dir", str(tmp_path / "out")]
    code = _INJECT.format(raised=raised, argv=argv, tool=str(REPO / "tools" / "infer.py"))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize(
    "raised,name",
    [('ValueError("internal")', "ValueError"), ('OSError(5, "internal I/O")', "OSError")],
    ids=["ValueError", "OSError"],
)
def test_a_builtin_error_in_a_tool_is_a_bug_with_its_traceback(raised, name, tmp_path):
    r = _run_infer_raising(raised, tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.returncode != USER_ERROR_STATUS
    assert "Traceback (most recent call last)" in r.stderr, r.stderr
    assert f"{name}: " in r.stderr.strip().splitlines()[-1] and "internal" in r.stderr
    assert "in broken" in r.stderr  # the traceback reaches the frame that raised
    assert "infer.py: error:" not in r.stderr


@pytest.mark.parametrize(
    "raised,expected",
    [
        ('GhostdetError("photo.jpg is not what was expected")', "photo.jpg is not what was expected"),
        (
            'GhostdetError("cannot write there", argument="output_dir")',
            "--output-dir: cannot write there",
        ),
    ],
    ids=["plain", "argument"],
)
def test_a_ghostdet_error_in_a_tool_is_one_line_and_exit_2(raised, expected, tmp_path):
    r = _run_infer_raising(raised, tmp_path)
    assert r.returncode == USER_ERROR_STATUS, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines() == [f"infer.py: error: {expected}"], r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------------ run_tool
@pytest.mark.parametrize(
    "err",
    [ValueError("internal"), OSError("internal"), FileNotFoundError("x"), RuntimeError("y"), KeyError("z")],
    ids=lambda e: type(e).__name__,
)
def test_run_tool_lets_builtin_errors_through(err, capsys):
    def body():
        raise err

    with pytest.raises(type(err)) as e:
        run_tool(body, "tool.py")
    assert e.value is err
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "err",
    [
        GhostdetError("a"),
        ToolError("b"),
        InputError("c", argument="device"),
        ArgumentError("d"),
        CheckpointError("e"),
        OutputError("f"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_run_tool_reports_ghostdet_errors_as_one_line(err, capsys):
    def body():
        raise err

    assert run_tool(body, "tool.py") == USER_ERROR_STATUS
    lead = "--device: " if getattr(err, "argument", None) == "device" else ""
    assert capsys.readouterr().err == f"tool.py: error: {lead}{err}\n"


def test_run_tool_debug_prints_the_traceback_of_a_user_error(capsys):
    def body():
        raise InputError("missing.jpg not found")

    assert run_tool(body, "tool.py", debug=True) == USER_ERROR_STATUS
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in body" in err
    assert err.strip().splitlines()[-1] == "tool.py: error: missing.jpg not found"


# -------------------------------------------------------------------- the hierarchy itself
def _package_exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a ghostdet module, by qualified name."""
    found = {}
    for info in pkgutil.walk_packages(ghostdet.__path__, "ghostdet."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError as e:  # an optional extra that is not installed
            if e.name is None or e.name.split(".")[0] == "ghostdet":
                raise
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_user_facing_exception_class_is_a_ghostdet_error():
    classes = _package_exception_classes()
    # the walk sees the modules that define the hierarchy (a broken walk must not pass vacuously)
    for name in (
        "ghostdet.errors.GhostdetError",
        "ghostdet.config.recipe.ConfigError",
        "ghostdet.data.validation.DataError",
        "ghostdet.models.weights.WeightsMismatchError",
        "ghostdet.cli.errors.ToolError",
        "ghostdet.engine.run.NonFiniteLossError",
    ):
        assert name in classes, name
    warnings = {n for n, c in classes.items() if issubclass(c, Warning)}
    outside = {
        n
        for n, c in classes.items()
        if not issubclass(c, GhostdetError) and n not in NOT_USER_ERRORS and n not in warnings
    }
    assert not outside, f"exception classes outside the GhostdetError hierarchy: {sorted(outside)}"
    assert not any(issubclass(classes[n], GhostdetError) for n in NOT_USER_ERRORS if n in classes)


def test_user_errors_keep_the_builtin_bases_callers_rely_on():
    from ghostdet.config.recipe import ConfigError
    from ghostdet.data.images import ImageReadError
    from ghostdet.data.validation import DataError
    from ghostdet.deploy.onnx import ExportError
    from ghostdet.models.weights import NotAStateDictError, WeightsDownloadError, WeightsMismatchError
    from ghostdet.utils.checkpoint_io import CheckpointReadError

    expected = {
        ConfigError: ValueError,
        DataError: ValueError,
        ArgumentError: ValueError,
        CheckpointError: ValueError,
        CheckpointReadError: CheckpointError,
        WeightsMismatchError: (CheckpointError, RuntimeError),
        NotAStateDictError: (CheckpointError, TypeError),
        WeightsDownloadError: (InputError, OSError),
        ImageReadError: OSError,
        ExportError: RuntimeError,
    }
    for cls, bases in expected.items():
        assert issubclass(cls, GhostdetError), cls
        for base in bases if isinstance(bases, tuple) else (bases,):
            assert issubclass(cls, base), (cls, base)


def test_argument_names_the_parameter_and_defaults_to_none():
    assert GhostdetError("x").argument is None
    err = ArgumentError("num_classes must be >= 1, got 0", argument="num_classes")
    assert err.argument == "num_classes" and str(err) == "num_classes must be >= 1, got 0"
    assert isinstance(err, ValueError)


def test_a_builder_refusing_an_argument_names_it():
    from ghostdet.models import ghostnet

    with pytest.raises(ArgumentError, match="num_classes") as e:
        ghostnet(num_classes=0)
    assert e.value.argument == "num_classes"
