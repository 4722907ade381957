"""The median of several runs: ``python -m benchmarks.median run1.json run2.json ...``.

Single runs vary by tens of percent on a shared 2-core machine (a checkpoint, another
process). The table shows each figure of each (implementation, section, variant) as its
median over the runs given; each ratio, and each target, is the median of the runs' own
ratios (the targets with their range). A ratio of two medians would pair ours' figure from
one run with the floor's from another, taken minutes apart, which is what reporting ratios
is meant to avoid.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections.abc import Sequence

from benchmarks.common import Result
from benchmarks.report import FLOOR, METRICS, format_table, format_targets, ratio, targets

_FIGURES = ("jobs_per_s", "pg_cpu_s", "pg_backend_cpu_s", "client_cpu_s", "p50_ms", "p95_ms", "p99_ms", "seconds")


def load(path: str) -> list[Result]:
    """The results of one ``--json`` file."""
    with open(path) as f:
        raw = json.load(f)
    names = {f.name for f in dataclasses.fields(Result)}
    return [Result(**{k: v for k, v in r.items() if k in names}) for r in raw["results"]]


def median_results(runs: Sequence[Sequence[Result]]) -> list[Result]:
    """One result per (impl, section, variant), each figure the median over the runs that have it."""
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for run in runs:
        for r in run:
            groups.setdefault((r.impl, r.section, r.variant), []).append(r)
    out = []
    for rs in groups.values():
        merged = dataclasses.replace(rs[0], notes=[], extra=dict(rs[0].extra))
        for name in _FIGURES:
            values = [getattr(r, name) for r in rs if getattr(r, name) is not None]
            setattr(merged, name, statistics.median(values) if values else None)
        out.append(merged)
    return out


def median_ratios(runs: Sequence[Sequence[Result]]) -> dict[tuple[str, str, str, str], float]:
    """Each ratio cell of the table, (section, variant, metric title, implementation): the median of the runs' own."""
    values: dict[tuple[str, str, str, str], list[float]] = {}
    for run in runs:
        by = {(r.section, r.variant, r.impl): r for r in run}
        for (section, variant, impl), result in by.items():
            base = by.get((section, variant, FLOOR))
            if impl == FLOOR or base is None:
                continue
            for metric in METRICS:
                if (value := ratio(metric, result, base)) is not None:
                    values.setdefault((section, variant, metric.title, impl), []).append(value)
    return {key: statistics.median(v) for key, v in values.items()}


def median_targets(runs: Sequence[Sequence[Result]]) -> list[str]:
    """One line per target: the median of the ratios the runs that have it read, met or not, and their range."""
    per_run = [targets(run) for run in runs]
    lines = []
    for name in dict.fromkeys(t.name for run in per_run for t in run):
        found = [t for run in per_run for t in run if t.name == name]
        values = [t.value for t in found]
        median = dataclasses.replace(found[0], value=statistics.median(values))
        lines.append(median.line(f"{len(values)} runs: {min(values):.2f}-{max(values):.2f}x"
                                 f" ({sum(t.met for t in found)} met)"))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.median", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="results files written by python -m benchmarks --json")
    args = p.parse_args(argv)
    runs = [load(f) for f in args.files]
    print(format_table(median_results(runs), median_ratios(runs)))
    if lines := median_targets(runs):
        print()
        print("targets (issue 5), each the median of the runs' own ratios:")
        print("\n".join(lines))
    print()
    print("per run:")
    for path, run in zip(args.files, runs, strict=True):
        lines = [line for line in format_targets(run).splitlines()[1:] if line]
        print(f"  {path}:")
        print("\n".join(f"    {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
