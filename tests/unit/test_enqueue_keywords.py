"""App.enqueue takes the plain path (prepare_plain, which takes only handler, data, queue, priority and
max_attempts) only when every other keyword has its default, and passes every keyword on otherwise: a keyword
added to enqueue cannot be dropped silently. No database: validation stops before any statement."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from aiojobs_pg import App
from aiojobs_pg import enqueue as enq


class Stop(Exception):
    """Raised by the patched validators, with what they were given."""

    def __init__(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(path)
        self.path, self.args_, self.kwargs = path, args, kwargs


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> App:
    def recorder(path: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            raise Stop(path, args, kwargs)
        return record

    monkeypatch.setattr(enq, "prepare", recorder("prepare"))
    monkeypatch.setattr(enq, "prepare_plain", recorder("prepare_plain"))
    return App("postgresql://nobody@127.0.0.1:1/none", schema="s")


async def validated(app: App, **kwargs: Any) -> Stop:
    with pytest.raises(Stop) as stopped:
        await app.enqueue("h", {"a": 1}, **kwargs)
    return stopped.value


# Every keyword of enqueue but those prepare_plain takes (and connection, which does not shape the job), read
# from the signature: one added later is checked here without a change to this test.
PLAIN = frozenset({"handler", "data", "queue", "priority", "max_attempts", "connection"})
KEYWORDS = [p.name for p in inspect.signature(App.enqueue).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in PLAIN]


def test_the_keywords_read_from_the_signature_are_the_ones_a_plain_job_leaves_at_their_default() -> None:
    assert {"name", "delay", "dedup_key", "schedule", "after", "backoff", "concurrency_key"} <= set(KEYWORDS)


@pytest.mark.parametrize("keyword", KEYWORDS)
async def test_a_keyword_other_than_its_default_takes_the_full_validation_with_its_value(app: App,
                                                                                         keyword: str) -> None:
    value = object()  # no default of any keyword: only this call's own value can arrive
    stop = await validated(app, **{keyword: value})
    assert stop.path == "prepare"
    assert stop.kwargs[keyword] is value


async def test_queue_priority_and_attempts_keep_a_job_plain(app: App) -> None:
    stop = await validated(app, queue="q", priority=3, max_attempts=7)
    assert stop.path == "prepare_plain"
    assert stop.args_[:5] == ("h", {"a": 1}, "q", 3, 7)


async def test_every_keyword_at_its_default_is_plain(app: App) -> None:
    defaults = {name: inspect.signature(App.enqueue).parameters[name].default for name in KEYWORDS}
    assert (await validated(app, **defaults)).path == "prepare_plain"

