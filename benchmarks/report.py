"""The results table: one row per (section, variant), implementations side by side.

With results of the floor only, each metric has one column.  When another
implementation ("ours") has results too, each metric gets a column per
implementation, floor first, plus a ratio column ``<impl>/floor`` for each other
implementation wherever both figures exist for the row.  Ratios are plain
quotients: above 1 is better for jobs/s, worse for CPU and latency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from benchmarks.common import Result

__all__ = ["FLOOR", "METRICS", "Target", "format_table", "format_targets", "ratio", "targets"]

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


def ratio(metric: _Metric, num: Result, den: Result) -> float | None:
    """``metric`` of ``num`` over that of ``den``, where both figures exist."""
    a, b = metric.value(num), metric.value(den)
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def format_table(results: Sequence[Result], ratios: Mapping[tuple[str, str, str, str], float] | None = None) -> str:
    """The table as text, then the notes of the results, one line each.

    ``ratios`` maps (section, variant, metric title, implementation) to the ratio to print in
    that cell instead of the quotient of the two figures shown (``benchmarks.median``: the
    median of each run's own ratio).
    """
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
                if o is None or base is None:
                    row.append("")
                    continue
                key = (section, variant, m.title, other)
                value = ratios[key] if ratios is not None and key in ratios else ratio(m, o, base)
                row.append("-" if value is None else f"{value:.2f}x")
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


@dataclass(frozen=True)
class Target:
    """One ratio target of the performance issue, as one run's results read."""

    name: str
    value: float
    limit: float
    higher_is_better: bool
    detail: str

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self, detail: str | None = None) -> str:
        """The target's line: name, ratio, met or not, and ``detail`` (the figures, by default)."""
        return f"{self.name:<42} {self.value:6.3f}x  {'met' if self.met else 'NOT met':<7}  {detail or self.detail}"


def targets(results: Sequence[Result], impl: str = "ours") -> list[Target]:
    """The ratio targets of the performance issue that these results have figures for.

    The floor of the drain targets is the issue's: one hand-written loop on one connection
    claiming 100 at a time (floor ``c1``). Ours is its best one-process drain with history on.
    The floor's several-connection variants are shown beside it, as a harder reference.
    """
    by = {(r.impl, r.section, r.variant): r for r in results}
    found: list[Target] = []

    def add(name: str, value: float | None, limit: float, higher_is_better: bool, detail: str) -> None:
        if value is not None:
            found.append(Target(name, value, limit, higher_is_better, detail))

    def quotient(num: float | None, den: float | None) -> float | None:
        return num / den if num is not None and den else None

    floor_loop = by.get((FLOOR, "drain", "c1"))
    drains = [r for r in results if r.impl == impl and r.section == "drain" and r.extra.get("processes") == 1
              and r.extra.get("history") and r.jobs_per_s]
    if floor_loop is not None and floor_loop.jobs_per_s and drains:
        best = max(drains, key=lambda r: r.jobs_per_s or 0.0)
        floors = [r for r in results if r.impl == FLOOR and r.section == "drain" and r.jobs_per_s]
        strongest = max(floors, key=lambda r: r.jobs_per_s or 0.0)
        add("drain, one process, history on >= 0.70x", quotient(best.jobs_per_s, floor_loop.jobs_per_s), 0.70, True,
            f"ours {best.variant} {best.jobs_per_s:,.0f}/s vs the floor's loop {floor_loop.jobs_per_s:,.0f}/s"
            f" ({quotient(best.jobs_per_s, strongest.jobs_per_s) or 0:.2f}x of floor {strongest.variant},"
            f" {strongest.extra.get('connections', '?')} connections: {strongest.jobs_per_s:,.0f}/s)")
        add("pg cpu per job, history on <= 1.5x", quotient(best.pg_cpu_ms_per_job, floor_loop.pg_cpu_ms_per_job), 1.5,
            False, f"ours {best.variant} {_num(best.pg_cpu_ms_per_job, '.4f')} vs"
            f" {_num(floor_loop.pg_cpu_ms_per_job, '.4f')} ms/job")
    # single-alternating is the single enqueue again, the two taking turns in blocks (paired.py).
    for variant, limit in (("single", 0.9), ("single-alternating", 0.9), ("batch", 0.5)):
        o, f = by.get((impl, "enqueue", variant)), by.get((FLOOR, "enqueue", variant))
        if o is not None and f is not None:
            add(f"enqueue {variant} >= {limit:.2f}x", quotient(o.jobs_per_s, f.jobs_per_s), limit, True,
                f"{_num(o.jobs_per_s, ',.0f')} vs {_num(f.jobs_per_s, ',.0f')} jobs/s")
    o, f = by.get((impl, "latency", "50/s")), by.get((FLOOR, "latency", "50/s"))
    if o is not None and f is not None:
        for q in ("p50", "p99"):
            ov, fv = getattr(o, f"{q}_ms"), getattr(f, f"{q}_ms")
            add(f"latency {q} <= 1.30x", quotient(ov, fv), 1.3, False, f"{_num(ov, '.1f')} vs {_num(fv, '.1f')} ms")
    return found


def format_targets(results: Sequence[Result], impl: str = "ours") -> str:
    """The targets of the performance issue, each with its figure from these results and met/not met."""
    lines = [t.line() for t in targets(results, impl)]
    for r in results:
        growth = r.extra.get("rss_growth_mb") if r.section == "memory" else None
        if growth is not None:
            warm = [x["other_tasks"] for x in r.extra.get("samples", []) if x["jobs"] >= r.extra.get("warmup", 0)]
            ok = growth < 20 and len(set(warm)) <= 1  # the engine's own tasks, after warm-up
            lines.append(f"{'memory: RSS growth < 20 MB, tasks flat':<42} {growth:+5.1f} MB   "
                         f"{'met' if ok else 'NOT met':<7}  over {r.n:,} jobs")
    if not lines:
        return ""
    return "\n".join(["targets (issue 5):", *lines])
