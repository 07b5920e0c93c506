"""Parameter, multiply-add (MAC) and CPU latency accounting for backbones.

Layers, lowest first (a module imports only modules listed before it):

* :mod:`~ghostdet.utils.counting` - params and MACs (paper convention and thop),
  :func:`profile`. It imports nothing of ghostdet, so :func:`ghostdet.ghostify` counts with it.
* :mod:`~ghostdet.analysis.latency` - interleaved CPU timing (:func:`measure_latency`,
  :func:`time_interleaved`).
* :mod:`~ghostdet.analysis.paper_figures` - the published figures, as data.
* :mod:`~ghostdet.analysis.backbones` - the comparison table's rows (:data:`BACKBONES`,
  :data:`DETECTION_BACKBONES`).
* :mod:`~ghostdet.analysis.comparison` and :mod:`~ghostdet.analysis.report` - the comparison
  (:func:`compare_backbones`) and its markdown/CSV/plot output (``tools/compare_backbones.py``).
* :mod:`~ghostdet.analysis.paper` - the GhostNet paper's tables (``tools/paper_tables.py``).
  It builds Ghost models with :func:`ghostdet.ghostify`, which sits above ``counting``, so it is
  not imported here (that would make this package and ``ghostify`` import each other): use
  ``from ghostdet.analysis.paper import paper_tables, format_paper_tables``.
"""

from ghostdet.analysis.backbones import BACKBONES, DETECTION_BACKBONES, BackboneSpec
from ghostdet.analysis.comparison import ComparisonRow, compare_backbones
from ghostdet.analysis.latency import Timings, measure_latency, time_interleaved
from ghostdet.analysis.report import format_markdown, plot_macs_latency, write_csv
from ghostdet.utils.counting import (
    InputSize,
    Profile,
    count_macs,
    count_params,
    input_shape,
    layer_macs,
    profile,
    split_macs,
    thop_macs,
)

__all__ = [
    "BACKBONES",
    "DETECTION_BACKBONES",
    "BackboneSpec",
    "ComparisonRow",
    "InputSize",
    "Profile",
    "Timings",
    "compare_backbones",
    "count_macs",
    "count_params",
    "format_markdown",
    "input_shape",
    "layer_macs",
    "measure_latency",
    "plot_macs_latency",
    "profile",
    "split_macs",
    "thop_macs",
    "time_interleaved",
    "write_csv",
]
