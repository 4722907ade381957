"""Unit tests (no database) for job validation: ``enqueue.prepare`` and ``models.dump_json``."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiojobs_pg.enqueue import NewJob, Uniform, Validated, prepare, prepare_many, prepare_plain
from aiojobs_pg.errors import DataTooLarge, InvalidSchedule, UnknownHandler, ValidationError
from aiojobs_pg.models import _make_encoder, dump_json, json_array


class Opaque:
    """An object json cannot encode."""


def _prepare(**overrides: Any) -> NewJob:
    kwargs: dict[str, Any] = {"handler": "h", "data": None, "max_attempts": 3}
    kwargs.update(overrides)
    return prepare(**kwargs)


# (keyword overrides, expected ValidationError.field)
BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"handler": ""}, "handler"),
    ({"handler": "   "}, "handler"),
    ({"handler": 5}, "handler"),
    ({"handler": "x" * 501}, "handler"),
    ({"handler": "a\x00b"}, "handler"),
    ({"data": {1, 2}}, "data"),
    ({"data": Opaque()}, "data"),
    ({"data": {"k": Opaque()}}, "data"),
    ({"data": math.nan}, "data"),
    ({"data": [math.inf]}, "data"),
    ({"data": {"x": -math.inf}}, "data"),
    ({"data": "a\x00b"}, "data"),
    ({"data": {"a\x00": 1}}, "data"),
    ({"data": "\ud800"}, "data"),
    ({"data": {"\udfff": 1}}, "data"),
    ({"data": b"bytes"}, "data"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": -1}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"max_attempts": "3"}, "max_attempts"),
    ({"max_attempts": 3.0}, "max_attempts"),
    ({"max_attempts": 10_001}, "max_attempts"),
    ({"delay": -1}, "delay"),
    ({"delay": -0.5}, "delay"),
    ({"delay": timedelta(seconds=-1)}, "delay"),
    ({"delay": "5x"}, "delay"),
    ({"delay": "-5m"}, "delay"),
    ({"delay": math.nan}, "delay"),
    ({"delay": True}, "delay"),
    ({"delay": 5, "run_at": datetime(2030, 1, 1, tzinfo=UTC)}, "delay"),
    ({"run_at": datetime(2030, 1, 1)}, "run_at"),
    ({"run_at": "2030-01-01T00:00:00Z"}, "run_at"),
    ({"queue": ""}, "queue"),
    ({"queue": "q" * 101}, "queue"),
    ({"queue": "q\x00"}, "queue"),
    ({"queue": 7}, "queue"),
    ({"queue": None}, "queue"),
    ({"queue": "\ud800"}, "queue"),
    ({"name": "n\x00"}, "name"),
    ({"name": 3}, "name"),
    ({"dedup_key": "k\x00"}, "dedup_key"),
    ({"dedup_key": "k" * 501}, "dedup_key"),
    ({"priority": 2**31}, "priority"),
    ({"priority": -(2**31) - 1}, "priority"),
    ({"priority": 1.5}, "priority"),
    ({"priority": True}, "priority"),
    ({"schedule": "every 5 minutes"}, "schedule"),
    ({"schedule": "0 0 31 2 *"}, "schedule"),
    ({"schedule": "0m"}, "schedule"),
    ({"schedule": ""}, "schedule"),
    ({"schedule": 5}, "schedule"),
    ({"timezone": "Europe/Paris"}, "timezone"),
    ({"schedule": "5m", "timezone": "Not/AZone"}, "timezone"),
    ({"schedule": "0 9 * * *", "timezone": "localtime"}, "timezone"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": "0s"}, "timeout"),
    ({"timeout": "soon"}, "timeout"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_INPUTS, ids=[repr(o)[:60] for o, _ in BAD_INPUTS])
def test_prepare_rejects_bad_input(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        _prepare(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


PLAIN_FIELDS = ("handler", "data", "queue", "priority", "max_attempts")


@pytest.mark.parametrize(("overrides", "field"), [(o, f) for o, f in BAD_INPUTS if o.keys() <= set(PLAIN_FIELDS)])
def test_prepare_plain_rejects_what_prepare_rejects_even_after_a_valid_job_of_its_kind(
        overrides: dict[str, Any], field: str) -> None:
    # A kind validated once is not checked again, so the remembered kinds must not let anything through:
    # True == 1 and hash(True) == hash(1), a bad data of a known kind must still fail, and so on.
    validated: Validated = set()
    fields = {"handler": "h", "data": None, "queue": "default", "priority": 1, "max_attempts": 1}
    prepare_plain(*fields.values(), None, validated)
    for name, value in [("priority", 0), ("max_attempts", 3)]:
        prepare_plain(*{**fields, name: value}.values(), None, validated)
    assert validated
    with pytest.raises(ValidationError) as info:
        prepare_plain(*{**fields, **overrides}.values(), None, validated)
    assert info.value.field == field


@pytest.mark.parametrize(("overrides", "field"), [(o, f) for o, f in BAD_INPUTS if o.keys() <= set(PLAIN_FIELDS)])
def test_prepare_many_names_the_bad_item_among_items_of_one_kind(overrides: dict[str, Any], field: str) -> None:
    # Items of one kind are validated as a whole (Uniform): a bad item, or a bad field they all share,
    # must still be rejected and named, even once their kind is remembered as valid.
    validated: Validated = set()
    good = [{"handler": "h", "data": i} for i in range(5)]
    assert isinstance(prepare_many(good, max_attempts=3, known_handlers=None, validated=validated), Uniform)
    for items, index in (([*good[:3], {**good[3], **overrides}, good[4]], 3), ([{**g, **overrides} for g in good], 0)):
        with pytest.raises(ValidationError) as info:
            prepare_many(items, max_attempts=3, known_handlers=None, validated=validated)
        assert info.value.field == f"jobs[{index}].{field}"


def test_prepare_many_reads_a_generator_of_items_once() -> None:
    for kind in ("h", "g"):  # all of one kind; then not
        items = ({"handler": h, "data": i} for i, h in enumerate(["h", "h", kind]))
        prepared = prepare_many(items, max_attempts=3, known_handlers=None)  # type: ignore[arg-type]
        batch = prepared.data if isinstance(prepared, Uniform) else json_array([j.data_json for j in prepared])
        assert json.loads(batch) == [0, 1, 2]


def test_prepare_many_takes_items_of_one_kind_as_one_uniform_batch() -> None:
    items = [{"handler": "h", "data": {"i": i}, "queue": "q", "priority": 1} for i in range(3)]
    batch = prepare_many(items, max_attempts=4, known_handlers=["h"])
    assert batch == Uniform(NewJob("h", "null", "q", 1, 4), '[{"i":0},{"i":1},{"i":2}]', 3)
    with pytest.raises(ValidationError) as info:
        prepare_many(items, max_attempts=4, known_handlers=["other"])
    assert info.value.field == "jobs[0].handler"

    class Text(str):
        pass

    # Anything but the same handler, queue and priority, or a key beyond them: each item on its own.
    for change in ({"queue": Text("q")}, {"handler": "g"}, {"priority": 2}, {"name": "n"}, {"delay": 1}):
        prepared = prepare_many([*items[:2], {**items[2], **change}], max_attempts=4, known_handlers=None)
        assert isinstance(prepared, list) and [j.handler for j in prepared] == ["h", "h", change.get("handler", "h")]
    # True == 1, but it is no priority: types are compared before values.
    for bad, field in (({"priority": True}, "jobs[2].priority"), (("not", "a", "dict"), "jobs[2]")):
        with pytest.raises(ValidationError) as info:
            prepare_many([*items[:2], {**items[2], **bad} if isinstance(bad, dict) else bad], max_attempts=4,
                         known_handlers=None)
        assert info.value.field == field


@pytest.mark.parametrize("overrides", [{"name": "n"}, {"timeout": 5}, {"delay": 0}, {"run_at": datetime.now(UTC)},
                                       {"dedup_key": "k"}, {"schedule": "5m"}, {"schedule": "5m", "misfire": "all"},
                                       {"schedule": "0 * * * *", "timezone": "Europe/Paris"}])
def test_a_job_with_any_field_but_the_plain_ones_is_not_plain(overrides: dict[str, Any]) -> None:
    # insert_one sends a plain job through the five-column insert_plain: nothing else may go that way.
    assert _prepare(data={"a": 1}, queue="q", priority=4, max_attempts=9).plain
    assert not _prepare(**overrides).plain


def test_prepare_plain_checks_the_handler_once_handlers_are_known() -> None:
    validated: Validated = set()
    prepare_plain("anything", None, "default", 0, 3, None, validated)  # no handlers registered: not checked
    with pytest.raises(UnknownHandler):
        prepare_plain("anything", None, "default", 0, 3, ["known"], validated)
    assert prepare_plain("known", {"a": 1}, "default", 0, 3, ["known"], validated) == NewJob(
        "known", '{"a":1}', "default", 0, 3)


def test_invalid_schedule_is_an_invalid_schedule_error() -> None:
    with pytest.raises(InvalidSchedule):
        _prepare(schedule="every 5 minutes")


def test_unknown_handler_rejected_only_when_handlers_are_known() -> None:
    with pytest.raises(UnknownHandler) as info:
        _prepare(handler="nope", known_handlers=["send_email"])
    assert info.value.field == "handler"
    assert "nope" in str(info.value)
    assert "send_email" in str(info.value)
    assert _prepare(handler="send_email", known_handlers=["send_email"]).handler == "send_email"
    assert _prepare(handler="nope", known_handlers=None).handler == "nope"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        ({"a": [1, 2.5, "é", True, None]}, '{"a":[1,2.5,"é",true,null]}'),
        ("\\u0000", '"\\\\u0000"'),  # a literal backslash-u0000 text, not a NUL
        ("\\\\u0000", '"\\\\\\\\u0000"'),
        ("\U0001f600", '"\U0001f600"'),
    ],
)
def test_dump_json_accepts(value: Any, expected: str) -> None:
    assert dump_json(value, "data") == expected
    assert json.loads(expected) == value


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        Opaque(),
        math.nan,
        math.inf,
        [-math.inf],
        "\x00",
        "a\\\x00",  # a backslash then a NUL: the escape is preceded by an escaped backslash
        {"k\x00": 1},
        "\ud800",
        ["ok", {"k": "\udc00"}],
        {(1, 2): "tuple key"},
        10**5000,  # beyond Python's int-to-str digit limit
    ],
    ids=lambda v: "huge-int" if isinstance(v, int) else repr(v)[:40],
)
def test_dump_json_rejects(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        dump_json(value, "payload")
    assert info.value.field == "payload"


def test_dump_json_rejects_cycles_and_too_deep_nesting() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValidationError):
        dump_json(cyclic, "data")
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValidationError):
        dump_json(deep, "data")


def test_dump_json_keeps_no_state_from_a_failed_call() -> None:
    # One encoder serves every call: a failure must not leave a marker that makes the same
    # (now valid) value look circular on the next call.
    outer: list[Any] = [{"x": 1}, Opaque()]
    with pytest.raises(ValidationError):
        dump_json(outer, "data")
    outer[1] = 2
    assert dump_json(outer, "data") == '[{"x":1},2]'


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (None, 4),
        ("x" * 8, 10),  # its quotes count
        ({"é": "€"}, 12),  # UTF-8 bytes, not characters (9 of them)
        ("\U0001f600" * 2, 10),
    ],
)
def test_dump_json_limit_counts_the_utf8_bytes_of_the_text(value: Any, size: int) -> None:
    text = dump_json(value, "data", size)
    assert len(text.encode("utf-8")) == size
    assert dump_json(value, "data", None) == text
    with pytest.raises(DataTooLarge) as info:
        dump_json(value, "result", size - 1)
    assert (info.value.field, info.value.size, info.value.limit) == ("result", size, size - 1)
    assert info.value.message == f"is {size} bytes as JSON; the limit is {size - 1} bytes (max_data_bytes)"
    assert isinstance(info.value, ValidationError)


def test_prepare_functions_apply_the_data_limit() -> None:
    with pytest.raises(DataTooLarge):
        _prepare(data="x" * 9, max_data_bytes=10)
    validated: Validated = set()
    job = prepare_plain("h", "x" * 8, "default", 0, 3, None, validated, max_data_bytes=10)
    assert job.data_json == '"' + "x" * 8 + '"'
    with pytest.raises(DataTooLarge):  # the kind is known now: only the data is checked, and it still is
        prepare_plain("h", "x" * 9, "default", 0, 3, None, validated, max_data_bytes=10)
    for items in ([{"handler": "h"}, {"handler": "h", "data": "x" * 9}],
                  [{"handler": "h"}, {"handler": "h", "data": "x" * 9, "name": "n"}]):
        with pytest.raises(DataTooLarge) as info:
            prepare_many(items, max_attempts=3, known_handlers=None, max_data_bytes=10)
        assert info.value.field == "jobs[1].data"


def _nan_accepting_encoder(*args: Any) -> Any:
    # Encodes the self-test's sample right (text fixed here: json.dumps would call the fake back), and NaN too.
    return lambda value, indent: ['{"a":[1,2.5,null,true,"é\\n"],"b":{}}' if isinstance(value, dict) else "NaN"]


def _unknown_signature(*args: Any) -> Any:
    raise TypeError("takes 8 arguments")


@pytest.mark.parametrize("make", [None, _unknown_signature, _nan_accepting_encoder],
                         ids=["no C encoder", "other signature", "accepts NaN"])
def test_an_untrusted_c_encoder_falls_back_to_the_stdlib_one(monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(json.encoder, "c_make_encoder", make)
        encode = _make_encoder()
    # The stdlib's own encoder looks the C one up again on each call: it gets the real one back.
    assert encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(ValueError):
        encode(math.nan)


def test_the_trusted_c_encoder_is_used_here() -> None:
    # CPython 3.11-3.13 pass the self-test; if this fails, dump_json silently lost its fast path.
    assert _make_encoder().__qualname__ == "_make_encoder.<locals>.encode"


def test_prepare_accepts_valid_input_and_normalises() -> None:
    paris = timezone(timedelta(hours=2))
    job = _prepare(
        handler="send", data={"to": "a@b"}, name="welcome", queue="mail", priority=-(2**31 - 1),
        max_attempts=10_000, timeout="2m", run_at=datetime(2030, 5, 1, 12, 0, tzinfo=paris), dedup_key="",
    )
    assert job.data_json == '{"to":"a@b"}'
    assert job.timeout == 120.0
    assert job.run_at == datetime(2030, 5, 1, 10, 0, tzinfo=UTC)
    assert job.run_at.utcoffset() == timedelta(0)
    assert job.delay is None
    assert _prepare(delay="10m").delay == 600.0
    assert _prepare(delay=timedelta(seconds=1.5)).delay == 1.5
    assert _prepare(priority=2**31 - 1).priority == 2**31 - 1
    assert _prepare(queue="q" * 100).queue == "q" * 100


def test_prepare_schedule_first_tick() -> None:
    before = datetime.now(UTC)
    job = _prepare(schedule=" 5m ")
    assert job.schedule == "5m"
    assert job.timezone == "UTC"
    assert job.run_at is not None
    assert job.run_at > before
    assert job.run_at - before <= timedelta(minutes=5)
    assert job.run_at.timestamp() % 300 == 0
    # An explicit delay wins over the first tick.
    assert _prepare(schedule="5m", delay=1).run_at is None


def test_prepare_many_names_the_item() -> None:
    items: list[dict[str, Any]] = [{"handler": "h"} for _ in range(10)]
    items[7] = {"handler": "h", "max_attempts": 0}
    with pytest.raises(ValidationError) as info:
        prepare_many(items, max_attempts=3, known_handlers=None)
    assert info.value.field == "jobs[7].max_attempts"
    with pytest.raises(ValidationError) as info:
        prepare_many([{"handler": "h"}, {"data": 1}], max_attempts=3, known_handlers=None)
    assert info.value.field == "jobs[1]"
    with pytest.raises(ValidationError) as info:
        prepare_many([{"handler": "h", "bogus": 1}], max_attempts=3, known_handlers=None)
    assert info.value.field == "jobs[0]"
    assert [j.max_attempts for j in prepare_many([{"handler": "h"}, {"handler": "h", "max_attempts": 9}],
                                                 max_attempts=4, known_handlers=None)] == [4, 9]


# Any code point, with lone surrogates, NUL, backslashes and blanks drawn often.
ANY_CHAR = (
    st.characters(codec=None, exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
    | st.sampled_from(["\x00", "\\", " ", "\t", "u", "0"])
)
ANY_TEXT = st.text(ANY_CHAR, max_size=600)


@settings(max_examples=300, deadline=None)
@given(queue=ANY_TEXT, handler=ANY_TEXT, dedup_key=st.none() | ANY_TEXT, name=st.none() | ANY_TEXT)
def test_prepare_text_fields_never_raise_anything_but_validation_error(
    queue: str, handler: str, dedup_key: str | None, name: str | None
) -> None:
    try:
        job = prepare(handler, None, queue=queue, name=name, dedup_key=dedup_key, max_attempts=1)
    except ValidationError:
        return
    for value in (job.queue, job.handler, job.dedup_key, job.name):
        if value is not None:
            assert "\x00" not in value
            value.encode("utf-8")
    assert job.queue.strip() and len(job.queue) <= 100
    assert job.handler.strip()


@settings(max_examples=200, deadline=None)
@given(schedule=ANY_TEXT, tz=st.none() | ANY_TEXT)
def test_prepare_schedule_fields_never_raise_anything_but_validation_error(schedule: str, tz: str | None) -> None:
    with contextlib.suppress(ValidationError):
        prepare("h", None, schedule=schedule, timezone=tz, max_attempts=1)


SHORT_TEXT = st.text(ANY_CHAR, max_size=20)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | SHORT_TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(SHORT_TEXT, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSONISH)
def test_dump_json_roundtrips_or_raises_validation_error(value: Any) -> None:
    try:
        text = dump_json(value, "data")
    except ValidationError as exc:
        assert exc.field == "data"
        return
    # Whatever is accepted is valid UTF-8 JSON without NUL, and decodes back to the same value.
    text.encode("utf-8")
    decoded = json.loads(text, parse_constant=_no_constants)
    assert decoded == value
    assert not any("\x00" in s for s in _strings(decoded))


def _no_constants(name: str) -> Any:
    raise AssertionError(f"dump_json produced the non-standard constant {name}")


def _strings(value: Any) -> list[str]:
    """Every string in a decoded JSON value, dict keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    return []


# --- regressions: bugs found while writing these tests ---

@pytest.mark.parametrize("delay", [timedelta(days=3_000_000), "99999999d", 1e13])
def test_prepare_rejects_delay_beyond_representable_dates(delay: Any) -> None:
    with pytest.raises(ValidationError) as info:
        _prepare(delay=delay)
    assert info.value.field == "delay"


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),
    ],
    ids=["max-minus-5h", "min-plus-5h"],
)
def test_prepare_run_at_out_of_utc_range_is_a_validation_error(run_at: datetime) -> None:
    with pytest.raises(ValidationError) as info:
        _prepare(run_at=run_at)
    assert info.value.field == "run_at"
