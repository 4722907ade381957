"""The shop's tests, written as a user of aiojobs_pg writes them (see docs/testing.md).

Run: ``pytest examples/testing --aiojobs-pg-dsn postgresql://localhost/test`` (or set
``AIOJOBS_PG_TEST_DSN``; with neither, an embedded server starts for the session).
"""

from __future__ import annotations

import pytest
import shop

from aiojobs_pg import App
from aiojobs_pg.testing import assert_enqueued, drain, enqueued_jobs, make_context, refute_enqueued, run_job

# --- one handler, inline: no worker, no database ---


async def test_a_declined_card_is_retried_in_an_hour() -> None:
    run = await run_job(shop.app, "charge_card", {"order_id": 2, "card": "4000-0000-0000-0002", "amount_cents": 500})
    assert run.status == "retrying"
    assert run.retry_in == 3600
    assert run.progress == [(0.5, "calling the provider")]


async def test_a_declined_card_fails_on_its_last_attempt() -> None:
    run = await run_job(shop.app, "charge_card", {"order_id": 3, "card": "4000-0000-0000-0002", "amount_cents": 500},
                        attempt=3, max_attempts=3)
    assert run.status == "failed"
    assert run.error == "Retry: card declined"


async def test_a_bad_amount_fails_with_the_handlers_error() -> None:
    run = await run_job(shop.app, "charge_card", {"order_id": 4, "card": "4242", "amount_cents": 0})
    assert run.status == "retrying"
    assert isinstance(run.exception, ValueError)
    assert "nothing to charge" in str(run.exception)


async def test_a_sync_handler_called_directly() -> None:
    assert shop.send_receipt({"order_id": 5}) == "receipt for order 5"
    ctx = make_context("charge_card", attempt=2)
    assert not ctx.is_last_attempt


# --- with the database: the aiojobs_pg_app fixture is shop.app on a schema of this test's own ---


async def test_a_charge_completes_and_enqueues_the_receipt(aiojobs_pg_app: App) -> None:
    # run_job with an open App: what the handler enqueues lands in this test's schema.
    run = await run_job(aiojobs_pg_app, "charge_card", {"order_id": 1, "card": "4242", "amount_cents": 500})
    assert run.unwrap() == {"order_id": 1, "charged": 500}
    await assert_enqueued(aiojobs_pg_app, "send_receipt", {"order_id": 1}, queue="mail", count=1)


async def test_placing_an_order_enqueues_its_charge(aiojobs_pg_app: App) -> None:
    await shop.place_order(6, "4242", 1200)
    await assert_enqueued(aiojobs_pg_app, "charge_card", {"order_id": 6}, queue="payments")
    await refute_enqueued(aiojobs_pg_app, "send_receipt")


async def test_an_order_placed_in_a_rolled_back_transaction_enqueues_nothing(aiojobs_pg_app: App) -> None:
    async with aiojobs_pg_app.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await shop.place_order(7, "4242", 1200, connection=conn)
        await transaction.rollback()
    await refute_enqueued(aiojobs_pg_app, "charge_card")


async def test_an_order_is_charged_and_gets_its_receipt(aiojobs_pg_app: App) -> None:
    await shop.place_order(8, "4242", 1200)
    result = await drain(aiojobs_pg_app)
    # The charge ran, and the receipt it enqueued on another queue ran too.
    assert result.counts() == {"completed": 2, "retried": 0, "failed": 0, "cancelled": 0, "remaining": 0}


async def test_a_declined_order_ends_failed_after_its_attempts(aiojobs_pg_app: App) -> None:
    await shop.place_order(9, "4000-0000-0000-0002", 1200)
    first = await drain(aiojobs_pg_app)
    assert (first.retried, first.remaining) == (1, 1)  # waiting an hour for its next attempt
    rest = await drain(aiojobs_pg_app, include_scheduled=True)  # runs the retries now
    assert (rest.retried, rest.failed, rest.remaining) == (1, 1, 0)
    assert await enqueued_jobs(aiojobs_pg_app) == []


async def test_each_test_starts_empty(aiojobs_pg_app: App) -> None:
    assert await enqueued_jobs(aiojobs_pg_app) == []
    with pytest.raises(AssertionError, match="nothing is pending"):
        await assert_enqueued(aiojobs_pg_app, "charge_card")
