"""The paper's s/d ablation (Sec. 4.1, Tables 2-3): one short classification run per Ghost setting.

:func:`run_ablation` trains ``ghostify(model, ratio=s, dw_size=d)`` for every requested cell
(and, optionally, the dense baseline) with one fixed epoch budget, and writes::

    OUTPUT_DIR/ablation.csv    model, s, d, params, MACs, top-1, top-5, epochs (one row per cell)
    OUTPUT_DIR/ablation.md     the same as a markdown table
    OUTPUT_DIR/s{S}_d{D}/      each cell's train_cls run (baseline: OUTPUT_DIR/dense/)

The sweep folder follows the run-folder rule (:mod:`ghostdet.utils.run_dir`): a new sweep into
a folder that holds one takes the next free name. With ``resume`` set in the base config, a
cell whose row is already in ``ablation.csv`` for the same epoch budget is skipped and an
interrupted cell resumes from its own ``checkpoint.pth``, so the sweep continues; with
``exist_ok`` the old sweep's table and cells are replaced.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from ghostdet.config.classification import ClsConfig
from ghostdet.errors import OutputError
from ghostdet.utils.files import atomic_write_text
from ghostdet.utils.run_dir import claim_run_dir

__all__ = ["ABLATION_DW_SIZES", "ABLATION_RATIOS", "ablation_markdown", "run_ablation"]

#: the paper's sweep: s in 2..10 (Table 3 goes up to s=5; the reference reproduction to 10), d in 1..7
ABLATION_RATIOS = tuple(range(2, 11))
ABLATION_DW_SIZES = (1, 3, 5, 7)
_FIELDS = ("model", "s", "d", "params", "macs", "top1", "top5", "epochs")


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an ``ablation.csv`` this module wrote ([] when there is none).

    Raises:
        OutputError: the file is not such a table (``argument="output_dir"``).
    """
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = tuple(reader.fieldnames or ())
        for r in rows:
            int(r["epochs"]), float(r["top1"])  # the values this module reads back must parse
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
        fields = ()
    if fields != _FIELDS:
        raise OutputError(
            f"{path} is not an ablation table written by ghostdet (columns {', '.join(_FIELDS)}); it is left "
            "untouched: choose another output folder",
            argument="output_dir",
        )
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def ablation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of ablation rows (``s``/``d`` ``-`` for the dense baseline)."""
    lines = ["| model | s | d | params | MACs | top-1 | top-5 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['s']} | {r['d']} | {int(r['params']) / 1e6:.3f}M "
            f"| {int(r['macs']) / 1e6:.1f}M | {100 * float(r['top1']):.1f}% | {100 * float(r['top5']):.1f}% |"
        )
    return "\n".join(lines) + "\n"


def run_ablation(
    base: ClsConfig,
    output_dir: str | PathLike,
    ratios: Sequence[int] = ABLATION_RATIOS,
    dw_sizes: Sequence[int] = ABLATION_DW_SIZES,
    baseline: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train every ``(s, d)`` cell (and the dense baseline) of ``base.model`` for ``base.epochs``.

    Args:
        base: the run config every cell starts from (model, data, solver, epoch budget);
            ``ghostify``/``ratio``/``dw_size``/``output_dir``/``resume`` are set per cell. Its
            ``resume`` (any value) continues the sweep in ``output_dir``; its ``exist_ok``
            replaces the sweep there; neither: a folder holding a sweep is left alone and the
            next free name is used.
        output_dir: the sweep's folder (CSV, markdown, one sub-folder per cell).
        ratios: the ``s`` values.
        dw_sizes: the ``d`` values.
        baseline: also train the unconverted model.
        log: printer of progress lines.

    Returns:
        the rows of ``ablation.csv`` (every cell done so far, in sweep order).

    Raises:
        OutputError: ``output_dir`` is (under) a file, holds an ``ablation.csv`` this module
            did not write, or another process is writing the sweep.
    """
    continues = bool(base.resume)
    fresh = base.exist_ok and not continues
    with claim_run_dir(output_dir, reuse=continues or base.exist_ok, fresh=fresh, log=log) as folder:
        rows = _sweep(base, folder.path, ratios, dw_sizes, baseline, fresh, log)
    log(f"{len(rows)} cell(s) in {folder.path / 'ablation.csv'} and ablation.md")
    return rows


def _sweep(
    base: ClsConfig,
    out: Path,
    ratios: Sequence[int],
    dw_sizes: Sequence[int],
    baseline: bool,
    fresh: bool,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from ghostdet.engine.train_cls import build_classifier, train_classifier
    from ghostdet.utils.counting import count_macs, count_params

    csv_path = out / "ablation.csv"
    cells: list[tuple[str, str]] = [("-", "-")] if baseline else []
    cells += [(str(s), str(d)) for s in ratios for d in dw_sizes]
    existing = _read_rows(csv_path)
    same = [r for r in existing if r["model"] == base.model and int(r["epochs"]) == base.epochs]
    done = {(r["s"], r["d"]): r for r in same}
    kept = [r for r in existing if not (r in same and (r["s"], r["d"]) in cells)]  # other sweeps' rows
    rows: list[dict[str, Any]] = []
    for i, (s, d) in enumerate(cells, 1):
        if (s, d) in done:
            log(
                f"[{i}/{len(cells)}] s={s} d={d}: done before "
                f"(top-1 {float(done[(s, d)]['top1']):.4f}), skipped"
            )
            rows.append(done[(s, d)])
            continue
        dense = s == "-"
        cfg = dataclasses.replace(
            base,
            ghostify=not dense,
            ratio=base.ratio if dense else int(s),
            dw_size=base.dw_size if dense else int(d),
            output_dir=str(out / ("dense" if dense else f"s{s}_d{d}")),
            resume=None if fresh else "auto",  # a fresh sweep replaces old cells, else they continue
            exist_ok=True,
        ).validate()
        log(
            f"[{i}/{len(cells)}] s={s} d={d}: training {cfg.model} for {cfg.epochs} epoch(s) "
            f"in {cfg.output_dir}"
        )
        metrics = train_classifier(cfg)
        model = build_classifier(dataclasses.replace(cfg, weights=None), int(metrics["num_classes"]))
        row = {
            "model": cfg.model,
            "s": s,
            "d": d,
            "params": count_params(model),
            "macs": count_macs(model.eval(), (1, 3, cfg.image_size, cfg.image_size)),
            "top1": f"{metrics['top1']:.4f}",
            "top5": f"{metrics['top5']:.4f}",
            "epochs": cfg.epochs,
        }
        rows.append(row)
        _write_rows(csv_path, rows + kept)
        atomic_write_text(out / "ablation.md", ablation_markdown(rows))
    atomic_write_text(out / "ablation.md", ablation_markdown(rows))
    return rows
