"""The results table: one row per (section, variant), implementations side by side.

With results of the floor only, each metric has one column.  When another
implementation ("ours") has results too, each metric gets a column per
implementation, floor first, plus a ratio column ``<impl>/floor`` for each other
implementation wherever both figures exist for the row.  Ratios are plain
quotients: above 1 is better for jobs/s, worse for CPU and latency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.common import Result

__all__ = ["FLOOR", "format_table"]

FLOOR = "floor"


@dataclass(frozen=True)
class _Metric:
    title: str
    value: Callable[[Result], float | None]
    fmt: Callable[[Result], str]
    ratio_of: str = ""
    """What the ratio column compares, when not the figure itself."""


def _num(x: float | None, spec: str) -> str:
    if x is None or math.isnan(x):
        return "-"
    return format(x, spec)


def _latency(r: Result) -> str:
    if r.p50_ms is None:
        return "-"
    return "/".join(_num(x, ".1f") for x in (r.p50_ms, r.p95_ms, r.p99_ms))


METRICS: list[_Metric] = [
    _Metric("jobs/s", lambda r: r.jobs_per_s, lambda r: _num(r.jobs_per_s, ",.0f")),
    _Metric(
        "pg cpu ms/job",
        lambda r: r.pg_cpu_ms_per_job,
        lambda r: _num(r.pg_cpu_ms_per_job, ".4f"),
    ),
    _Metric(
        "client cpu ms/job",
        lambda r: r.client_cpu_ms_per_job,
        lambda r: _num(r.client_cpu_ms_per_job, ".4f"),
    ),
    _Metric("p50/p95/p99 ms", lambda r: r.p99_ms, _latency, ratio_of="p99 "),
]


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den == 0 or math.isnan(num) or math.isnan(den):
        return "-"
    return f"{num / den:.2f}x"


def format_table(results: Sequence[Result]) -> str:
    """The table as text, then the notes of the results, one line each."""
    impls: list[str] = []
    keys: list[tuple[str, str]] = []
    by: dict[tuple[str, str, str], Result] = {}
    for r in results:
        if r.impl not in impls:
            impls.append(r.impl)
        if r.key not in keys:
            keys.append(r.key)
        by[(r.section, r.variant, r.impl)] = r
    if FLOOR in impls:
        impls.remove(FLOOR)
        impls.insert(0, FLOOR)
    others = [i for i in impls if i != FLOOR] if FLOOR in impls else []
    multi = len(impls) > 1

    head1 = ["section", "variant"]
    head2 = ["", ""]
    for m in METRICS:
        for j, impl in enumerate(impls):
            head1.append(m.title if j == 0 else "")
            head2.append(impl if multi else "")
        for other in others:
            head1.append("")
            head2.append(f"{m.ratio_of}{other}/{FLOOR}")

    rows: list[list[str]] = []
    for section, variant in keys:
        row = [section, variant]
        for m in METRICS:
            for impl in impls:
                got = by.get((section, variant, impl))
                row.append(m.fmt(got) if got is not None else "")
            base = by.get((section, variant, FLOOR))
            for other in others:
                o = by.get((section, variant, other))
                row.append(_ratio(m.value(o), m.value(base)) if o is not None and base is not None else "")
        rows.append(row)

    table = [head1, head2] if multi else [head1]
    widths = [max(len(line[i]) for line in table + rows) for i in range(len(head1))]

    def line(cells: list[str]) -> str:
        out = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    text = [line(h) for h in table]
    text.append("  ".join("-" * w for w in widths))
    text += [line(r) for r in rows]

    notes = [f"[{r.impl} {r.section} {r.variant}] {note}" for r in results for note in r.notes]
    if notes:
        text.append("")
        text += notes
    for r in results:
        text += _samples(r)
    return "\n".join(text)


def _samples(r: Result) -> list[str]:
    """The memory samples of a result that has them (``extra["samples"]``), as a small table."""
    samples = r.extra.get("samples")
    if not samples:
        return []
    cols = [k for k in samples[0] if k != "calls"]
    rows = [[f"{s[k]:,}" if isinstance(s[k], int) else f"{s[k]}" for k in cols] for s in samples]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    out = ["", f"[{r.impl} {r.section} {r.variant}] samples:"]
    out.append("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return out
