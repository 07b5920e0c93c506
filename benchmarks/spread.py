"""Run a benchmark in several fresh Python processes and report each figure's spread.

One process can be lucky or unlucky (page placement, which core the OS hands it, a neighbour's
load), and interleaving inside it cannot see that. This runner starts ``benchmarks/bench_cpu.py``
(or ``--script``) ``--processes`` times, one after the other, each a fresh interpreter with the
same arguments and its own ``--json`` file, and prints for every figure the minimum, median and
maximum over the processes: first the ratios (the README's figures), then each model's absolute
median ms and share of peak FP32, then the speed-ups from more threads of onnxruntime's per-node
profile (``--sections onnxprofile --threads 1 2``). The header names the date, torch version, CPU
model and thread counts, so the markdown can go into the README as it is. ``--json FILE`` writes
every figure's samples and summary (per-layer scaling speed-ups included) for machines.

Usage (the benchmark's own arguments follow ``--``)::

    python benchmarks/spread.py --processes 5 -- --sections backbone --reps 80 --threads 2
    python benchmarks/spread.py --json s.json -- --sections backbone,throughput --threads 1 2 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_CPU = Path(__file__).resolve().parent / "bench_cpu.py"
# the kinds of figures collected: a numeric leaf counts when one of these is on its path
KINDS = ("ratios", "ms", "share_of_peak", "images_per_s", "speedup", "peak_fp32_gflops")
Path_ = tuple[str, ...]


def spread(samples: Sequence[float]) -> dict[str, float]:
    """``n``, ``min``, ``median`` and ``max`` of one figure's samples (one per process)."""
    if not samples:
        raise ValueError("no samples")
    return {
        "n": len(samples),
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
    }


def flatten(results: dict) -> dict[Path_, float]:
    """Every figure of a benchmark's JSON results, keyed by its path.

    ``info`` is skipped; list entries are keyed by their ``layer`` (the scaling rows) or their
    index; only numeric leaves with one of :data:`KINDS` on their path are kept.
    """
    out: dict[Path_, float] = {}

    def walk(path: Path_, node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk((*path, str(k)), v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                key = v.get("layer", i) if isinstance(v, dict) else i
                walk((*path, str(key)), v)
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and set(path) & set(KINDS):
            out[path] = float(node)

    walk((), {k: v for k, v in results.items() if k != "info"})
    return out


def summarise(runs: Sequence[dict]) -> dict[Path_, dict]:
    """Each figure's samples over ``runs`` (one results dict per process) and their
    :func:`spread`, in the order the figures first appear. A figure missing from some runs
    (e.g. a section that failed once) has fewer samples; ``n`` says how many."""
    samples: dict[Path_, list[float]] = {}
    for run in runs:
        for path, value in flatten(run).items():
            samples.setdefault(path, []).append(value)
    return {path: {**spread(v), "samples": v} for path, v in samples.items()}


def _figure(path: Path_) -> tuple[str, str, str, str]:
    """(threads, where, kind, name) of a figure's path ``runs/<threads>/<section>/.../<kind>/<name>``."""
    threads = path[1] if path[0] == "runs" else "-"
    body = path[2:] if path[0] == "runs" else path
    kinds = [i for i, p in enumerate(body) if p in KINDS]
    i = kinds[-1] if kinds else len(body) - 1
    return threads, " ".join(body[:i]), body[i], " ".join(body[i + 1 :])


def _fmt(stats: dict, digits: int) -> list[str]:
    return [f"{stats[k]:.{digits}f}" for k in ("min", "median", "max")]


def format_markdown(summary: dict[Path_, dict], header: dict) -> str:
    """The README-ready report: a header line, the ratio table and the absolute-ms table."""
    n = max((s["n"] for s in summary.values()), default=0)
    lines = [
        f"Measured {header['date_utc']}: {n} separate processes of `{header['command']}`; "
        f"torch {header.get('torch', '?')}, torchvision {header.get('torchvision', '?')}, "
        f"CPU {header.get('cpu_model', '?')} ({header.get('machine', '?')}), "
        f"threads {header.get('threads', '?')}.",
        "",
        "| threads | section | ratio (ghostdet / MobileNetV3) | min | median | max | n |",
        "|---|---|---|---|---|---|---|",
    ]
    figures = {path: _figure(path) for path in summary}
    for path, (threads, where, kind, name) in figures.items():
        if kind == "ratios":
            stats = summary[path]
            lines.append(f"| {threads} | {where} | {name} | {' | '.join(_fmt(stats, 3))} | {stats['n']} |")
    share = {(f[0], f[1], f[3]): summary[p] for p, f in figures.items() if f[2] == "share_of_peak"}

    def outside_scaling(kind: str) -> list:
        # the scaling section's per-layer figures are many; they stay in the JSON
        return [(p, f) for p, f in figures.items() if f[2] == kind and f[1].split(" ")[0] != "scaling"]

    ms_rows = outside_scaling("ms")
    if ms_rows:
        lines += [
            "",
            "| threads | section | model | ms min | ms median | ms max | share of peak FP32 (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for path, (threads, where, _, name) in ms_rows:
            s = share.get((threads, where, name))
            pct = f"{100 * s['median']:.1f}%" if s else "-"
            lines.append(f"| {threads} | {where} | {name} | {' | '.join(_fmt(summary[path], 2))} | {pct} |")
    speedups = outside_scaling("speedup")
    if speedups:
        lines += [
            "",
            "| threads | figure | speed-up at threads | min | median | max | n |",
            "|---|---|---|---|---|---|---|",
        ]
        for path, (threads, where, _, name) in speedups:
            stats = summary[path]
            lines.append(f"| {threads} | {where} | {name} | {' | '.join(_fmt(stats, 2))} | {stats['n']} |")
    peaks = [(f[0], summary[p]) for p, f in figures.items() if f[2] == "peak_fp32_gflops"]
    if peaks:
        lines.append("")
        lines += [
            f"Peak FP32 at {t} thread(s), measured with a 2048x2048 float32 torch.mm: median "
            f"{s['median']:.1f} GFLOP/s ({s['min']:.1f}-{s['max']:.1f})."
            for t, s in peaks
        ]
    return "\n".join(lines)


def run_processes(script: Path, bench_args: Sequence[str], processes: int) -> list[dict]:
    """Run ``script`` with ``bench_args`` in ``processes`` fresh interpreters, one after another,
    and return each one's ``--json`` results.

    Raises:
        RuntimeError: a process failed (its last stderr line is in the message).
    """
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(processes):
            out = Path(tmp) / f"run{i}.json"
            t0 = time.perf_counter()
            cmd = [sys.executable, str(script), *bench_args, "--json", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not out.exists():
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"process {i + 1} ({shlex.join(cmd)}) failed ({proc.returncode}): {last}")
            runs.append(json.loads(out.read_text()))
            print(f"  process {i + 1}/{processes} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return runs


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The runner's own arguments and the benchmark's (everything after ``--``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own, bench = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(
        description="Run a benchmark in several fresh processes; print min/median/max of every "
        "figure as markdown. The benchmark's arguments follow '--'.",
    )
    p.add_argument("--processes", type=int, default=5, help="separate processes (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure's samples here")
    p.add_argument(
        "--script", type=Path, default=BENCH_CPU, help="benchmark to run (default: benchmarks/bench_cpu.py)"
    )
    args = p.parse_args(own)
    if args.processes < 1:
        p.error("--processes must be >= 1 (the issue asks for at least 5)")
    if "--json" in bench:
        p.error("--json after '--' is the runner's job: each process gets its own file")
    if not args.script.is_file():
        p.error(f"--script {args.script} does not exist")
    return args, bench


def main(argv: Sequence[str] | None = None) -> int:
    args, bench_args = parse_args(argv)
    start = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = run_processes(args.script, bench_args, args.processes)
    info = runs[0].get("info", {})
    header = {**info, "date_utc": start, "command": shlex.join([args.script.name, *bench_args])}
    summary = summarise(runs)
    print(format_markdown(summary, header))
    if args.json:
        figures = [{"path": list(path), **stats} for path, stats in summary.items()]
        doc = {"info": header, "processes": args.processes, "figures": figures}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
