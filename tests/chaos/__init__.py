"""Fault suite (issue 6): real worker processes, real PostgreSQL, faults injected from outside.

Run with ``python -m pytest tests/chaos --run-slow``; see docs/reliability.md.
"""
