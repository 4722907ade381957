"""The webhook endpoints (``/webhooks``), through the in-process ASGI app."""

from __future__ import annotations

import httpx

from aiojobs_pg import App

SECRET = "a-shared-secret-of-some-length"


async def test_add_list_remove(client: httpx.AsyncClient, app: App) -> None:
    response = await client.post("/webhooks", json={"url": "https://ops.example/hooks", "events": ["failed"],
                                                    "secret": SECRET, "queues": ["mail"], "maxAttempts": 3,
                                                    "description": "ops"})
    assert response.status_code == 201, response.text
    hook = response.json()
    assert response.headers["location"] == f"/webhooks/{hook['id']}"
    assert response.headers["cache-control"] == "no-store"  # it holds the secret
    assert (hook["url"], hook["events"], hook["queues"], hook["handlers"], hook["maxAttempts"], hook["secret"]) == (
        "https://ops.example/hooks", ["failed"], ["mail"], None, 3, SECRET)
    made = (await client.post("/webhooks", json={"url": "http://10.0.0.7:8080/in?x=1", "events": ["completed"]})).json()
    assert len(made["secret"]) >= 32
    listed = (await client.get("/webhooks")).json()["data"]
    assert [h["id"] for h in listed] == [hook["id"], made["id"]]
    assert all("secret" not in h for h in listed)
    assert [w.id for w in await app.webhooks()] == [hook["id"], made["id"]]
    assert (await client.delete(f"/webhooks/{hook['id']}")).status_code == 204
    gone = await client.delete(f"/webhooks/{hook['id']}")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert (await client.delete("/webhooks/abc")).status_code == 404
    assert [h["id"] for h in (await client.get("/webhooks")).json()["data"]] == [made["id"]]


async def test_bad_input_is_422_naming_the_field(client: httpx.AsyncClient, app: App) -> None:
    for body, field in [
        ({"events": ["failed"]}, "url"),
        ({"url": "https://x.example/"}, "events"),
        ({"url": "ftp://x.example/", "events": ["failed"]}, "url"),
        ({"url": "https://u:p@x.example/", "events": ["failed"]}, "url"),
        ({"url": "https://x.example/", "events": ["failed", "failed"]}, "events"),
        ({"url": "https://x.example/", "events": ["nope"]}, "events"),
        ({"url": "https://x.example/", "events": ["failed"], "secret": "short"}, "secret"),
        ({"url": "https://x.example/", "events": ["failed"], "maxAttempts": 0}, "maxAttempts"),
        ({"url": "https://x.example/", "events": ["failed"], "handlers": "a"}, "handlers"),
        ({"url": "https://x.example/", "events": ["failed"], "colour": "red"}, "colour"),
    ]:
        response = await client.post("/webhooks", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, (body, response.json())
    assert await app.webhooks() == []


async def test_the_dashboard_lists_webhooks(client: httpx.AsyncClient) -> None:
    page = (await client.get("/dashboard")).text
    assert 'id="webhooks"' in page and 'id="webhooks-empty"' in page
    script = (await client.get("/static/app.js")).text
    assert 'api("GET", "webhooks")' in script and "loadWebhooks()" in script
