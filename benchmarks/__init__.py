"""Benchmarks of aiojobs_pg against a hand-written asyncpg floor; see README.md."""
