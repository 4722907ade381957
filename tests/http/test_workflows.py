"""``POST /chains`` and ``POST /groups``: App.chain and App.group over HTTP, through the in-process ASGI app."""

from __future__ import annotations

import httpx

from aiojobs_pg import App, JobStatus


async def test_a_chain_is_enqueued_in_order_and_runs_in_order(app: App, client: httpx.AsyncClient) -> None:
    response = await client.post("/chains", json={"steps": [
        {"handler": "echo", "data": 1}, {"handler": "echo", "data": 2, "onParentFailure": "run"}]})
    assert response.status_code == 201, response.text
    first, second = response.json()["data"]
    assert (first["status"], second["status"], second["parents"]) == ("pending", "waiting", [first["id"]])
    assert second["onParentFailure"] == "run"
    await app.run_worker(burst=True, handle_signals=False)
    assert (await app.get_job(second["id"])).status is JobStatus.COMPLETED


async def test_a_group_callback_waits_for_every_member(app: App, client: httpx.AsyncClient) -> None:
    response = await client.post("/groups", json={"members": [{"handler": "echo", "data": i} for i in range(3)],
                                                  "then": {"handler": "echo", "data": "all"}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["then"]["parents"] == [m["id"] for m in body["members"]]
    assert body["then"]["status"] == "waiting"
    await app.run_worker(burst=True, handle_signals=False)
    assert (await app.get_job(body["then"]["id"])).status is JobStatus.COMPLETED


async def test_a_bad_step_is_a_422_naming_it_and_nothing_is_written(app: App, client: httpx.AsyncClient) -> None:
    for path, body, field in [
        ("/chains", {"steps": [{"handler": "echo"}, {"handler": "echo", "maxAttempts": 0}]}, "steps[1].maxAttempts"),
        ("/chains", {"steps": [{"handler": "echo"}, {"handler": "echo", "after": [424242]}]}, "steps[1].after"),
        ("/chains", {"steps": [{"handler": "echo", "schedule": "1h"}]}, "steps[0].schedule"),
        ("/chains", {"steps": "echo"}, "steps"),
        ("/groups", {"members": [{"handler": "echo"}]}, "then"),
        ("/groups", {"members": [{"handler": "echo"}], "then": {"handler": "echo", "bogus": 1}}, "then.bogus"),
    ]:
        response = await client.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["field"] == field, response.text
    assert await app.list_jobs() == []
