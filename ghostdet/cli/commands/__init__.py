"""The subcommands of ``ghostdet``, each defined once (``tools/*.py`` run the same code).

Each command is a module here with three functions: ``build_parser(inv)`` (its flags),
``parse_args(argv, inv)`` (parse and check them) and ``run(args, inv)`` (the library call, through
:func:`ghostdet.cli.errors.run_tool`; returns the exit status). :data:`COMMANDS` lists them with
their one-line summary and the ``tools/`` script that runs the same command. An
:class:`Invocation` says how the command was run, for its usage and error lines (``ghostdet
train: error: ...`` or ``train_det.py: error: ...``) and its examples.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

__all__ = ["COMMANDS", "Command", "Invocation"]


@dataclass(frozen=True)
class Invocation:
    """How a command was run.

    Args:
        prog: its name in usage and error lines (``ghostdet train`` or ``train_det.py``).
        cmd: how a shell runs it (``ghostdet train`` or ``python tools/train_det.py``).
        launch: what ``torchrun`` launches (``-m ghostdet train`` or ``tools/train_det.py``).
    """

    prog: str
    cmd: str
    launch: str

    def text(self, template: str) -> str:
        """``template`` with ``{cmd}`` and ``{launch}`` replaced (other braces stay)."""
        return template.replace("{cmd}", self.cmd).replace("{launch}", self.launch)


@dataclass(frozen=True)
class Command:
    """One subcommand of ``ghostdet``.

    Args:
        name: its name (``train``).
        summary: one line for ``ghostdet --help``.
        script: the ``tools/`` script that runs it (``train_det.py``), if one does.
    """

    name: str
    summary: str
    script: Optional[str] = None

    def load(self) -> ModuleType:
        """The command's module (imported on use: ``ghostdet --help`` imports none)."""
        return importlib.import_module(f"{__name__}.{self.name.replace('-', '_')}")

    def invocation(self, script: bool = False) -> Invocation:
        """The :class:`Invocation` of ``ghostdet NAME``, or of its ``tools/`` script."""
        if script and self.script:
            return Invocation(self.script, f"python tools/{self.script}", f"tools/{self.script}")
        return Invocation(f"ghostdet {self.name}", f"ghostdet {self.name}", f"-m ghostdet {self.name}")


#: Every subcommand, in the order of ``ghostdet --help``.
COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("train", "train a GhostNet-FPN detector (Faster R-CNN, RetinaNet) on COCO, YOLO or VOC data",
                "train_det.py"),
        Command("train-cls", "train an image classifier (GhostNet, Ghost-VGG-16 / -ResNet-56, baselines)",
                "train_cls.py"),
        Command("eval", "COCO bbox evaluation of a trained detector", "eval_det.py"),
        Command("predict", "detect objects in images and videos; save copies with the boxes drawn, and JSON",
                "infer.py"),
        Command("browse", "draw a dataset's images with their ground-truth boxes, to check the labels",
                "browse_dataset.py"),
        Command("export", "export GhostNet models (deploy mode) to ONNX, checked with onnxruntime",
                "export_onnx.py"),
        Command("compare", "compare GhostNet with MobileNetV2/V3: params, MACs and CPU latency",
                "compare_backbones.py"),
        Command("bench", "time the backbones on this CPU (the full suite: benchmarks/bench_cpu.py)"),
        Command("visualize", "draw a Ghost module's intrinsic feature maps beside its ghost maps",
                "visualize_ghost_maps.py"),
        Command("ablate", "sweep the Ghost module's s (ratio) and d (cheap kernel) on a classifier",
                "ablate_ghost.py"),
        Command("convert", "convert a dataset split: YOLO/VOC -> COCO JSON, or COCO JSON -> YOLO/VOC",
                "convert_dataset.py"),
        Command("make-data", "write the synthetic shapes detection dataset (COCO format)",
                "make_synthetic_coco.py"),
        Command("make-cls-data", "write a synthetic shapes classification set (ImageFolder layout)",
                "make_synthetic_cls.py"),
        Command("paper-tables", "params and MACs of the GhostNet paper's models beside the paper's figures",
                "paper_tables.py"),
    )
}  # fmt: skip
