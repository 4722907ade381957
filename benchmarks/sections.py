"""The registry of benchmark sections that ``python -m benchmarks`` runs.

Sections run in the order listed.  Results of different implementations with
the same ``(section, variant)`` key are printed side by side, "floor" first,
with a ratio column ``<impl>/floor``.
"""

from __future__ import annotations

from benchmarks import floor, ours, paired
from benchmarks.common import Section


def all_sections() -> list[Section]:
    """Every registered section, in run order."""
    sections: list[Section] = [*floor.SECTIONS]

    # ======================================================================
    # REGISTRATION POINT for the aiojobs_pg ("ours") sections.
    #
    # Add a module benchmarks/ours.py whose SECTIONS list holds
    # Section("ours", "<name>", run) entries, with the same section names
    # ("enqueue", "drain", "latency") and the same variant keys as the floor
    # ("single", "batch", "c1", "c10", "c50", "c100", "<rate>/s") so the report
    # can put both side by side.  Each run(cfg: BenchConfig) returns
    # list[Result] with impl="ours".  Then:
    #
    #     from benchmarks import ours
    #     sections += ours.SECTIONS
    # ======================================================================
    sections += ours.SECTIONS
    # Both implementations in one section, taking turns (see paired.py).
    sections += paired.SECTIONS

    return sections
