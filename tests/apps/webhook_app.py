"""A worker process for the webhook tests (tests/integration/test_webhooks.py).

``python -m tests.apps.webhook_app`` runs one worker with its queues not given, so it delivers webhooks.
Settings from the environment: ``AIOJOBS_PG_DSN`` / ``AIOJOBS_PG_SCHEMA`` (read by the App),
``PROC_LEASE`` (2 s). Handler: ``noop`` returns its data.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import structlog

from aiojobs_pg import App, Backoff, WebhookOptions

app = App(lease=float(os.environ.get("PROC_LEASE", "2")), poll_interval=0.2, maintenance_interval=0.5)
# A held request must outlast its worker, which the test kills; retries come fast.
app.webhook_options = WebhookOptions(timeout=60, backoff=Backoff(base=0.1, factor=1, jitter=0))


@app.handler()
async def noop(data: Any) -> Any:
    return data


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        cache_logger_on_first_use=True)
    async with app:
        await app.run_worker(concurrency=4)


if __name__ == "__main__":
    asyncio.run(main())
