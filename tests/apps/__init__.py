"""Small Apps imported by tests (e.g. ``python -m aiojobs_pg worker tests.apps.cli_app:app``)."""
