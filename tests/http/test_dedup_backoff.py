"""``POST /jobs`` with ``dedupWindow`` and ``backoff``, and the ``existing`` flag of its answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aiojobs_pg import App, Backoff


async def post(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    body.setdefault("handler", "echo")
    return await client.post("/jobs", json=body)


async def test_a_window_returns_the_completed_job_and_says_so(app: App, client: httpx.AsyncClient) -> None:
    first = await post(client, dedupKey="acct-7", dedupWindow="1h", data={"n": 1})
    assert first.status_code == 201 and first.json()["existing"] is False
    await app.run_worker(burst=True, handle_signals=False)
    again = await post(client, dedupKey="acct-7", dedupWindow=3600, data={"n": 2})
    assert again.status_code == 201  # as before dedupWindow: the body says whether a job was added
    body = again.json()
    assert (body["id"], body["existing"], body["status"], body["result"]) == (
        first.json()["id"], True, "completed", {"n": 1})
    assert again.headers["Location"].endswith(f"/jobs/{body['id']}")
    plain = await post(client, dedupKey="acct-7")  # no window: only a live job holds the key
    assert plain.json()["existing"] is False and plain.json()["id"] != body["id"]
    live = await post(client, dedupKey="acct-7")
    assert (live.json()["existing"], live.json()["id"]) == (True, plain.json()["id"])
    # existing is the answer of a create only, not a field of the job
    assert "existing" not in (await client.get(f"/jobs/{body['id']}")).json()


async def test_backoff_is_taken_stored_and_shown(app: App, client: httpx.AsyncClient) -> None:
    created = await post(client, backoff={"base": 2, "factor": 3})
    assert created.status_code == 201, created.text
    shown = {"base": 2.0, "factor": 3.0, "cap": 3600.0, "jitter": 0.2}
    assert created.json()["backoff"] == shown
    assert (await client.get(f"/jobs/{created.json()['id']}")).json()["backoff"] == shown
    assert (await app.get_job(created.json()["id"])).backoff == Backoff(base=2, factor=3)
    fixed = await post(client, backoff=5)
    assert fixed.json()["backoff"] == {"base": 5.0, "factor": 1.0, "cap": 5.0, "jitter": 0.0}
    assert (await post(client)).json()["backoff"] is None
    assert (await post(client, backoff=None, dedupWindow=None)).status_code == 201


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"dedupWindow": "1h"}, "dedupWindow", "needs a dedup_key"),
    ({"dedupKey": "k", "dedupWindow": 0}, "dedupWindow", ""),
    ({"dedupKey": "k", "dedupWindow": "1 h"}, "dedupWindow", "invalid duration"),
    ({"dedupKey": "k", "dedupWindow": True}, "dedupWindow", ""),
    ({"backoff": {"base": -1}}, "backoff", "base >= 0"),
    ({"backoff": {"delay": 5}}, "backoff", "unknown key 'delay'"),
    ({"backoff": "5"}, "backoff", "got string"),
    ({"backoff": [1]}, "backoff", "got array"),
    ({"backoff": True}, "backoff", "got boolean"),
    ({"backoff": {"factor": 10**9}}, "backoff", "factor must be at most"),
])
async def test_bad_values_are_422_naming_the_field(client: httpx.AsyncClient, body: dict[str, Any], field: str,
                                                   fragment: str) -> None:
    response = await post(client, **body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and fragment in response.json()["message"]
