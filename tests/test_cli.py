"""The ``ghostdet`` command: its subcommands, the tools/ scripts that run them, and the config flags
made from the config dataclasses' fields (recipe < flags < ``--set``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from test_bad_input import _tiny_data, _train_argv

from ghostdet.cli.commands import COMMANDS
from ghostdet.cli.main import main, run_command
from ghostdet.config.base import BaseTrainConfig
from ghostdet.config.classification import ClsConfig
from ghostdet.config.detection import TrainConfig
from ghostdet.config.recipe import ConfigError, config_fields

REPO = Path(__file__).resolve().parents[1]

#: subcommand -> its tools/ script (an independent list: the README's table)
SCRIPTS = {
    "train": "train_det", "train-cls": "train_cls", "eval": "eval_det", "predict": "infer",
    "browse": "browse_dataset",
    "export": "export_onnx", "compare": "compare_backbones", "visualize": "visualize_ghost_maps",
    "ablate": "ablate_ghost", "make-data": "make_synthetic_coco", "make-cls-data": "make_synthetic_cls",
    "paper-tables": "paper_tables", "convert": "convert_dataset",
}  # fmt: skip
ALL = [*SCRIPTS, "bench"]


def _load(script: str):
    spec = importlib.util.spec_from_file_location(f"_cli_tool_{script}", REPO / "tools" / f"{script}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _exit(fn, argv) -> int:
    try:
        return fn(argv)
    except SystemExit as e:
        return e.code


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


# ------------------------------------------------------------------------------ the command
def test_every_tool_is_a_subcommand_and_every_subcommand_module_loads():
    assert set(COMMANDS) == set(ALL)
    for name, cmd in COMMANDS.items():
        assert cmd.script == (f"{SCRIPTS[name]}.py" if name in SCRIPTS else None)
        assert (REPO / "tools" / cmd.script).is_file() if cmd.script else True
        mod = cmd.load()
        assert callable(mod.build_parser) and callable(mod.parse_args) and callable(mod.run)
    assert {p.stem for p in (REPO / "tools").glob("*.py")} == set(SCRIPTS.values())


@pytest.mark.parametrize("how", ["module", "script"])
def test_help_lists_every_subcommand(how):
    exe = Path(sys.executable).with_name("ghostdet")
    if how == "script" and not exe.is_file():
        pytest.skip("the ghostdet console script is not installed (pip install -e .)")
    cmd = [sys.executable, "-m", "ghostdet"] if how == "module" else [str(exe)]
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ghostdet ")
    listed = re.findall(r"^    ([a-z][a-z-]*)\b", r.stdout, flags=re.M)
    assert sorted(listed) == sorted(ALL)
    for name in ALL:
        assert COMMANDS[name].summary in r.stdout
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and re.fullmatch(r"ghostdet \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_subcommand_help_through_python_m():
    r = subprocess.run(
        [sys.executable, "-m", "ghostdet", "train", "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("usage: ghostdet train ")
    assert {"--detector", "--synthetic-root", "--set", "--config", "--lr-steps"} <= _flags(r.stdout)
    assert "torchrun --nproc_per_node 8 -m ghostdet train --config" in r.stdout


@pytest.mark.parametrize("name", ALL)
def test_subcommand_help_lists_the_flags_of_its_script(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert _exit(main, [name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ghostdet {name} ")
    flags = _flags(out)
    assert {"--help", "--debug"} <= flags
    if name not in SCRIPTS:
        assert "benchmarks/bench_cpu.py" in out  # bench says where the full suite is
        return
    script = SCRIPTS[name]
    assert _exit(_load(script).main, ["--help"]) == 0
    tool_out = capsys.readouterr().out
    assert tool_out.startswith(f"usage: {script}.py ")
    assert _flags(tool_out) == flags
    # the examples name the way it was run
    assert f"python tools/{script}.py" not in out and f"ghostdet {name} " not in tool_out


def test_usage_errors_name_the_way_it_was_run(capsys):
    assert _exit(main, ["train", "--epochs", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ghostdet train: error: argument --epochs: invalid int value") and "\n" not in err
    assert _exit(_load("train_det").main, ["--epochs", "x"]) == 2
    assert capsys.readouterr().err.startswith("train_det.py: error: argument --epochs: invalid int value")
    assert _exit(main, ["nosuch"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("ghostdet: error: argument COMMAND: invalid choice: 'nosuch'") and "train-cls" in err
    )
    assert _exit(main, []) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_a_config_error_names_the_flag_and_the_command(tmp_path, capsys):
    argv = ["--output-dir", str(tmp_path / "out"), "--lr", "inf"]
    assert main(["train-cls", *argv]) == 2
    assert (
        capsys.readouterr().err.strip() == "ghostdet train-cls: error: --lr: must be a finite number, got inf"
    )
    assert _load("train_cls").main(argv) == 2
    assert capsys.readouterr().err.strip() == "train_cls.py: error: --lr: must be a finite number, got inf"
    assert main(["train", "--set", "synthetic.image_size=8"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == "ghostdet train: error: --set synthetic.image_size=8: must be in [32, 4096], got 8"
    assert not (tmp_path / "out").exists()


def test_ghostdet_train_writes_what_train_det_writes(tmp_path):
    """The same argv through the command and through tools/train_det.py: the same resolved run."""
    _tiny_data(tmp_path)
    argv = _train_argv(tmp_path, "--seed", "3")
    assert main(["train", *argv, "--output-dir", str(tmp_path / "cmd")]) == 0
    assert _load("train_det").main([*argv, "--output-dir", str(tmp_path / "tool")]) == 0
    a = yaml.safe_load((tmp_path / "cmd" / "config.yaml").read_text())
    b = yaml.safe_load((tmp_path / "tool" / "config.yaml").read_text())
    assert (a.pop("output_dir"), b.pop("output_dir")) == (str(tmp_path / "cmd"), str(tmp_path / "tool"))
    assert a == b
    assert (a["seed"], a["width"], a["min_size"], a["epochs"], a["vis_images"]) == (3, 0.5, [48], 1, 0)
    assert a["train_ann"] == str(tmp_path / "train.json")
    assert list(a) == [k for k in TrainConfig().to_dict() if k != "output_dir"]  # the format of config.yaml


# ------------------------------------------------------------------- flags from the dataclasses
def _scalar(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    tp = args[0] if typing.get_origin(tp) is typing.Union else tp
    return tp in (bool, int, float, str) or (
        typing.get_origin(tp) is list and typing.get_args(tp)[0] in (int, float)
    )


def _parser(name):
    return COMMANDS[name].load().build_parser(COMMANDS[name].invocation())


def _option_dests(parser) -> dict[str, str]:
    return {
        a.option_strings[0]: a.dest
        for a in parser._actions
        if a.option_strings and a.dest not in ("help", "debug", "config", "set_")
    }


def _declared(cls) -> dict[str, str]:
    """key -> flag of every field with a declared help, read from the dataclass fields directly."""
    out = {}

    def walk(c, prefix):
        for f in dataclasses.fields(c):
            tp = typing.get_type_hints(c)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".")
            elif f.metadata.get("help"):
                key = prefix + f.name
                out[key] = f.metadata.get("flag") or "--" + key.replace(".", "-").replace("_", "-")

    walk(cls, "")
    return out


@pytest.mark.parametrize(
    "name,cls,excluded", [("train", TrainConfig, ()), ("train-cls", ClsConfig, ()),
                          ("ablate", ClsConfig, ("ghostify", "ratio", "dw_size"))]
)  # fmt: skip
def test_every_config_flag_is_a_field_and_every_declared_field_a_flag(name, cls, excluded):
    parser = _parser(name)
    options = _option_dests(parser)
    if name == "ablate":
        options = {k: v for k, v in options.items() if k not in ("--ratios", "--dw-sizes", "--no-baseline")}
    declared = {k: f for k, f in _declared(cls).items() if k not in excluded}
    assert set(options) == set(declared.values())
    keys = {f.key for f in config_fields(cls)}
    for flag, dest in options.items():
        key = next(k for k, f in declared.items() if f == flag)
        assert key in keys and dest == flag[2:].replace("-", "_")
    # no hand table: the training flags are many, and a shared field is a flag of both tools
    assert len(options) >= 30 if cls is TrainConfig else len(options) >= 25
    shared = {f.name for f in dataclasses.fields(BaseTrainConfig)}
    assert {"--" + n.replace("_", "-") for n in shared} <= set(options)


def _other_value(f):
    """A valid value of the field ``f`` other than its default, and its command-line words."""
    tp = f.annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) is typing.Union else tp
    if base is bool:
        return (not f.default), [f.flag if not f.default else "--no-" + f.flag[2:]]
    if typing.get_origin(base) is list:
        lo = int(f.check.ge or 1)
        return [lo, lo + 1], [f.flag, str(lo), str(lo + 1)]
    if f.check.choices is not None:
        choices = f.check.choices() if callable(f.check.choices) else f.check.choices
        value = next(c for c in choices if c != f.default)
    elif base is int:
        lo = f.check.ge if f.check.ge is not None else 1
        value = next(v for v in (3, 5, lo, 1) if v != f.default and f.check.problem(v) is None)
    elif base is float:
        value = next(v for v in (0.5, 0.25, 2.0) if v != f.default and f.check.problem(v) is None)
    elif f.check.pattern is not None:  # device, model
        value = next(v for v in ("cpu", "resnet56_cifar") if f.check.problem(v) is None)
    else:
        value = f"some/{f.key}"
    return value, [f.flag, str(value)]


@pytest.mark.parametrize("name,cls", [("train", TrainConfig), ("train-cls", ClsConfig)])
def test_each_flag_sets_its_key_and_each_scalar_field_is_settable(name, cls, tmp_path):
    mod = COMMANDS[name].load()
    inv = COMMANDS[name].invocation()
    resolve = mod.resolve_config
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\n")
    fields = config_fields(cls)
    for f in fields:
        if f.flag is None:
            continue
        value, words = _other_value(f)
        cfg = resolve(mod.parse_args(["--config", str(recipe), *words], inv))
        got = cfg
        for part in f.key.split("."):
            got = getattr(got, part)
        assert got == value, (f.key, words, got)
    scalars = [f for f in fields if _scalar(f.annotation)]
    assert len(scalars) >= 30
    for f in scalars:  # without a flag: --set KEY=VALUE reaches it
        value, _ = _other_value(dataclasses.replace(f, flag=f.flag or "--x"))
        cfg = resolve(mod.parse_args(["--config", str(recipe), "--set", f"{f.key}={value}"], inv))
        got = cfg
        for part in f.key.split("."):
            got = getattr(got, part)
        assert got == value, (f.key, got)


@pytest.mark.parametrize("name", ["train", "train-cls", "ablate"])
def test_precedence_recipe_then_flags_then_set(name, tmp_path):
    mod = COMMANDS[name].load()
    inv = COMMANDS[name].invocation()

    def epochs(*argv: str) -> int:
        args = mod.parse_args(["--config", str(recipe), *argv], inv)
        if name == "ablate":
            from ghostdet.cli.config_flags import config_overrides
            from ghostdet.config.classification import load_cls_config

            return load_cls_config(args.config, config_overrides(args, ClsConfig, mod.SWEPT)).epochs
        return mod.resolve_config(args).epochs

    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\nlr: 0.05\n")
    assert epochs() == 7
    assert epochs("--epochs", "5") == 5
    assert epochs("--epochs", "5", "--set", "epochs=3") == 3
    assert epochs("--set", "epochs=3", "--epochs", "5") == 3  # --set wins wherever it stands
    recipe.write_text("epochs: 0\n")  # a bad recipe value replaced by a flag is never checked
    assert epochs("--epochs", "2") == 2
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(recipe))}: epochs: must be >= 1, got 0$"):
        epochs()


def test_shared_fields_are_declared_once_with_each_task_defaults():
    assert issubclass(TrainConfig, BaseTrainConfig) and issubclass(ClsConfig, BaseTrainConfig)
    det, cls = TrainConfig(), ClsConfig()
    # the defaults the two configs had before they shared a base
    # (lr: none, scaled from base_lr to the effective batch since the recipe-parity change)
    assert (det.epochs, det.batch_size, det.lr, det.weight_decay, det.lr_scheduler, det.lr_steps) == (
        12, 2, None, 1e-4, "multistep", [8, 11])  # fmt: skip
    assert (det.warmup_iters, det.output_dir, det.print_freq, det.workers) == (1000, "runs/train", 20, 2)
    assert (cls.epochs, cls.batch_size, cls.lr, cls.weight_decay, cls.lr_scheduler, cls.lr_steps) == (
        200, 128, None, 5e-4, "cosine", [])  # fmt: skip
    assert (det.base_lr, cls.base_lr) == (0.16, 0.04)
    assert (cls.warmup_iters, cls.output_dir, cls.print_freq, cls.workers) == (30, "runs/train_cls", 50, 2)
    for c in (det, cls):
        assert (c.opt, c.momentum, c.lr_gamma, c.min_lr_ratio, c.warmup_factor, c.clip_grad_norm) == (
            "sgd", 0.9, 0.1, 0.0, 0.001, None)  # fmt: skip
        assert (c.device, c.amp, c.channels_last, c.resume, c.exist_ok, c.seed, c.threads) == (
            "auto", False, False, None, False, 0, None)  # fmt: skip
    # the saved config keeps the recipe layout: model keys first, run keys last
    keys = list(det.to_dict())
    assert keys[0] == "detector" and keys.index("data_path") < keys.index("epochs") < keys.index("device")
    assert next(iter(cls.to_dict())) == "model"


def test_bench_runs_the_library_latency_comparison(capsys):
    assert run_command("bench", ["--models", "ghostnet_050", "--size", "64", "--runs", "1", "--warmup", "0",
                                 "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| GhostNet 0.5x |" in out and "Latency: median of 1 runs" in out and "bench_cpu.py" in out
