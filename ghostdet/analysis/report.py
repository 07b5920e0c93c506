"""Rendering :func:`~ghostdet.analysis.compare_backbones` rows: markdown table, CSV and plot."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from os import PathLike

from ghostdet.analysis.comparison import ComparisonRow

__all__ = ["format_markdown", "plot_macs_latency", "write_csv"]


def _m(v: float | None, scale: float = 1e6, digits: int = 1) -> str:
    return "-" if v is None else f"{v / scale:.{digits}f}"


def _columns(
    rows: Sequence[ComparisonRow], cls_size: int = 224
) -> list[tuple[str, Callable[[ComparisonRow], str]]]:
    det_keys = list(rows[0].det_macs) if rows else []
    cols: list[tuple[str, Callable[[ComparisonRow], str]]] = [
        ("backbone", lambda r: r.label),
        ("params (M)", lambda r: _m(r.params, digits=2)),
        ("paper params (M)", lambda r: "-" if r.paper_params_m is None else f"{r.paper_params_m:g}"),
        (f"MACs@{cls_size} (M)", lambda r: _m(r.macs_224)),
        ("paper MACs (M)", lambda r: "-" if r.paper_macs_m is None else f"{r.paper_macs_m:g}"),
        (f"thop MACs@{cls_size} (M)", lambda r: _m(r.thop_macs_224)),
    ]
    for key in det_keys:
        cols.append((f"trunk MACs@{key} (G)", lambda r, k=key: _m(r.det_macs.get(k), 1e9, 2)))
    if det_keys and any(r.det_body_macs for r in rows):
        key = det_keys[0]
        cols.append((f"of which FPN@{key} (G)", lambda r, k=key: _fpn_part(r, k)))
    if any(r.latency_224_ms is not None for r in rows):
        cols.append((f"latency@{cls_size} (ms)", lambda r: _m(r.latency_224_ms, 1, 1)))
        for key in det_keys:
            cols.append((f"trunk latency@{key} (ms)", lambda r, k=key: _m(r.det_latency_ms.get(k), 1, 1)))
    return cols


def _fpn_part(row: ComparisonRow, key: str) -> str:
    if key not in row.det_body_macs:
        return "-"
    return _m(row.det_macs[key] - row.det_body_macs[key], 1e9, 2)


def format_markdown(rows: Sequence[ComparisonRow], cls_size: int = 224) -> str:
    """Render rows as a GitHub markdown table."""
    cols = _columns(rows, cls_size)
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r) for _, fmt in cols) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[ComparisonRow], path: str | PathLike) -> None:
    """Write rows as CSV with raw integers (params, MACs) and milliseconds."""
    det_keys = list(rows[0].det_macs) if rows else []
    header = ["name", "label", "detection", "params", "macs_224", "thop_macs_224"]
    header += [f"trunk_macs_{k}" for k in det_keys] + [f"body_macs_{k}" for k in det_keys]
    header += ["latency_224_ms"]
    header += [f"trunk_latency_{k}_ms" for k in det_keys] + ["paper_params_m", "paper_macs_m"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(
                [r.name, r.label, int(r.detection), r.params, r.macs_224, r.thop_macs_224]
                + [r.det_macs[k] for k in det_keys]
                + [r.det_body_macs.get(k, "") for k in det_keys]
                + [_blank(r.latency_224_ms)]
                + [_blank(r.det_latency_ms.get(k)) for k in det_keys]
                + [_blank(r.paper_params_m), _blank(r.paper_macs_m)]
            )


def _blank(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def plot_macs_latency(
    rows: Sequence[ComparisonRow], path: str | PathLike, size_key: str | None = None
) -> None:
    """Scatter of MACs vs median CPU latency, one labelled point per row.

    Args:
        rows: rows with latency measured.
        path: output image (e.g. ``.png``).
        size_key: ``"HxW"`` of a detection size to plot the trunk numbers at; default the
            classification size (full models).

    Raises:
        ImportError: matplotlib is not installed (``pip install ghostdet[plot]``).
        ValueError: the rows have no latency for the requested size.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'ghostdet[plot]' (or pip install matplotlib)"
        ) from None
    pts: list[tuple[str, float, float]] = []
    for r in rows:
        if size_key is None:
            macs, lat = r.macs_224, r.latency_224_ms
        else:
            macs, lat = r.det_macs.get(size_key), r.det_latency_ms.get(size_key)
        if macs is None or lat is None:
            raise ValueError(f"no latency measured for {r.label} at {size_key or 'the classification size'}")
        pts.append((r.label, macs / 1e6, lat))
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, macs, lat in pts:
        ax.scatter(macs, lat, color="tab:green" if label.startswith("GhostNet") else "tab:blue")
        ax.annotate(label, (macs, lat), textcoords="offset points", xytext=(4, 4), fontsize=8)
    where = "224x224 classifier" if size_key is None else f"trunk at {size_key}"
    ax.set_xlabel(f"MACs (millions, conv+linear), {where}")
    ax.set_ylabel("median CPU latency (ms), batch 1")
    ax.set_title("MACs vs CPU latency")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
