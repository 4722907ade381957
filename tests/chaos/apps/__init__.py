"""Worker processes started by the fault suite (``python -m tests.chaos.apps.worker``)."""
