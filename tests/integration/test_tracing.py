"""OpenTelemetry tracing (``aiojobs_pg.tracing``): the enqueue's PRODUCER span, each run's CONSUMER span
linked to it through the context stored with the job, their attributes, failed and retried runs, and
an App that is not instrumented writing no context and making no span."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need opentelemetry-sdk (the test extra)")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiojobs_pg import App, Backoff, JobContext, ValidationError
from aiojobs_pg.observers import Observers, observers_of
from aiojobs_pg.testing import drain
from aiojobs_pg.tracing import Tracing, instrument, tracing_of, uninstrument
from tests.helpers import eventually


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Where the test's spans end up (a provider of the test's own, not the global one)."""
    memory = InMemorySpanExporter()
    yield memory
    memory.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


@pytest.fixture
def tracing(app: App, provider: TracerProvider) -> Tracing:
    return instrument(app, provider)


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The finished spans called ``name``, in the order they ended."""
    return [s for s in exporter.get_finished_spans() if s.name == name]


def runs_of(exporter: InMemorySpanExporter, handler: str) -> list[ReadableSpan]:
    """The finished run spans of ``handler``'s jobs (queue default)."""
    return [s for s in spans(exporter, "run default") if (s.attributes or {}).get("aiojobs_pg.handler") == handler]


def attempt_of(span: ReadableSpan) -> Any:
    assert span.attributes is not None
    return span.attributes["aiojobs_pg.attempt"]


async def test_a_run_is_the_child_of_its_enqueue_and_links_to_it(app: App, tracing: Tracing,
                                                                 provider: TracerProvider,
                                                                 exporter: InMemorySpanExporter) -> None:
    tracer = provider.get_tracer("test")

    @app.handler()
    async def greet(data: Any, ctx: JobContext) -> str:
        with tracer.start_as_current_span("inside the handler"):
            await ctx.enqueue("follow", {"after": data["name"]})
        return "hi"

    @app.handler()
    async def follow(data: Any) -> None:
        return None

    with tracer.start_as_current_span("request") as request:
        job = await app.enqueue("greet", {"name": "ada"})
    # The context is stored with the job: the enqueue span's, as W3C trace context.
    stored = (await app.get_job(job.id)).trace_context
    assert stored is not None and job.trace_context == stored
    (enqueue,) = spans(exporter, "enqueue default")
    ctx = enqueue.get_span_context()
    assert ctx is not None
    assert json.loads(stored)["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.parent is not None and enqueue.parent.span_id == request.get_span_context().span_id
    assert dict(enqueue.attributes or {}) == {
        "messaging.system": "aiojobs_pg", "messaging.operation.type": "send", "messaging.operation.name": "enqueue",
        "messaging.destination.name": "default", "aiojobs_pg.handler": "greet", "messaging.message.id": str(job.id)}

    result = await drain(app)
    assert result.completed == 2
    (run,) = runs_of(exporter, "greet")
    assert run.kind is SpanKind.CONSUMER
    run_ctx = run.get_span_context()
    assert run_ctx is not None and run_ctx.trace_id == ctx.trace_id  # one trace across the queue
    assert run.parent is not None and run.parent.span_id == ctx.span_id
    assert [link.context.span_id for link in run.links] == [ctx.span_id]
    assert run.status.status_code is StatusCode.UNSET
    assert dict(run.attributes or {}) == {
        "messaging.system": "aiojobs_pg", "messaging.operation.type": "process", "messaging.operation.name": "run",
        "messaging.destination.name": "default", "messaging.message.id": str(job.id), "aiojobs_pg.handler": "greet",
        "aiojobs_pg.attempt": 1, "aiojobs_pg.max_attempts": job.max_attempts, "aiojobs_pg.outcome": "completed",
        "aiojobs_pg.worker_id": (run.attributes or {})["aiojobs_pg.worker_id"]}
    # The run's span is the handler's current span ...
    (inside,) = spans(exporter, "inside the handler")
    assert inside.parent is not None and inside.parent.span_id == run_ctx.span_id
    # ... and the creation context of the job it enqueued, whose run is in the same trace.
    (follow_run,) = runs_of(exporter, "follow")
    assert inside.context is not None
    assert follow_run.parent is not None and follow_run.parent.span_id == inside.context.span_id
    assert follow_run.context is not None and follow_run.context.trace_id == ctx.trace_id
    assert tracing.open_runs() == 0


async def test_failed_attempts_are_errors_and_each_retry_is_a_span(app: App, tracing: Tracing,
                                                                  exporter: InMemorySpanExporter) -> None:
    @app.handler()
    async def flaky(data: Any, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first try breaks")
        return "ok"

    @app.handler()
    async def broken(data: Any) -> None:
        raise ValueError("always")

    job = await app.enqueue("flaky", backoff=Backoff.fixed(0), max_attempts=3)
    await app.enqueue("broken", max_attempts=1)
    result = await drain(app, include_scheduled=True)
    assert (result.completed, result.retried, result.failed) == (1, 1, 1)

    runs = sorted(runs_of(exporter, "flaky"), key=attempt_of)
    assert [attempt_of(s) for s in runs] == [1, 2]
    first, second = runs
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "RuntimeError: first try breaks"
    assert (first.attributes or {})["aiojobs_pg.outcome"] == "retrying"
    assert (first.attributes or {})["aiojobs_pg.retry.delay_seconds"] == 0.0
    (event,) = first.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "RuntimeError"
    assert "Traceback" in str(dict(event.attributes or {})["exception.stacktrace"])
    assert second.status.status_code is StatusCode.UNSET
    assert (second.attributes or {})["aiojobs_pg.outcome"] == "completed"
    # Both attempts hang under the one enqueue: the retry is visible in the same trace.
    (enqueue,) = [s for s in spans(exporter, "enqueue default") if (s.attributes or {})["messaging.message.id"]
                  == str(job.id)]
    assert enqueue.context is not None
    assert {s.parent.span_id for s in runs if s.parent} == {enqueue.context.span_id}

    (dead,) = runs_of(exporter, "broken")
    assert dead.status.status_code is StatusCode.ERROR
    assert (dead.attributes or {})["aiojobs_pg.outcome"] == "failed"


async def test_a_batch_is_one_span_whose_context_every_job_carries(app: App, tracing: Tracing,
                                                                   exporter: InMemorySpanExporter) -> None:
    @app.handler()
    async def each(data: Any) -> None:
        return None

    batch = await app.enqueue_many([{"handler": "each", "data": i} for i in range(3)])
    ids = [j.id for j in batch]
    (enqueue,) = spans(exporter, "enqueue default")
    assert (enqueue.attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in (enqueue.attributes or {})
    stored = {(await app.get_job(job_id)).trace_context for job_id in ids}
    assert len(stored) == 1 and None not in stored
    await drain(app)
    runs = spans(exporter, "run default")
    assert enqueue.context is not None
    assert sorted(str((s.attributes or {})["messaging.message.id"]) for s in runs) == sorted(str(i) for i in ids)
    assert all(s.parent is not None and s.parent.span_id == enqueue.context.span_id for s in runs)


async def test_link_only_starts_a_trace_per_run(app: App, provider: TracerProvider,
                                                exporter: InMemorySpanExporter) -> None:
    instrument(app, provider, link_only=True)

    @app.handler()
    async def once(data: Any) -> None:
        return None

    await app.enqueue("once")
    await drain(app)
    (enqueue,) = spans(exporter, "enqueue default")
    (run,) = spans(exporter, "run default")
    assert enqueue.context is not None and run.context is not None
    assert run.parent is None and run.context.trace_id != enqueue.context.trace_id
    assert [link.context.span_id for link in run.links] == [enqueue.context.span_id]


async def test_off_by_default_no_context_is_stored_and_no_span_is_made(app: App, provider: TracerProvider,
                                                                       exporter: InMemorySpanExporter,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    @app.handler()
    async def plain(data: Any) -> None:
        return None

    # The plain fast path stays: an App without tracing sends plain jobs through insert_plain.
    calls: list[str] = []
    insert_plain = app.queries.insert_plain

    async def counting(*args: Any) -> Any:
        calls.append("insert_plain")
        return await insert_plain(*args)

    monkeypatch.setattr(app.queries, "insert_plain", counting)
    with provider.get_tracer("test").start_as_current_span("request"):
        job = await app.enqueue("plain")
    await app.enqueue_many([{"handler": "plain"}, {"handler": "plain"}])
    assert calls == ["insert_plain"]
    assert app.tracing is None and app.observer is None and tracing_of(app) is None
    async with app.pool.acquire() as conn:
        stored = await conn.fetch(f"SELECT trace_context FROM {app.schema}.jobs")
    assert len(stored) == 3 and all(r["trace_context"] is None for r in stored)
    assert (await app.get_job(job.id)).trace_context is None
    assert (await drain(app)).completed == 3
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]  # the test's own, nothing else


async def test_metrics_and_tracing_together(app: App, provider: TracerProvider,
                                            exporter: InMemorySpanExporter) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    from prometheus_client import CollectorRegistry

    from aiojobs_pg.metrics import instrument as instrument_metrics
    from aiojobs_pg.metrics import metrics_of

    tracing = instrument(app, provider)
    registry = CollectorRegistry()
    metrics = instrument_metrics(app, registry)
    assert isinstance(app.observer, Observers) and app.observer.observers == (tracing, metrics)
    assert metrics_of(app) is metrics and tracing_of(app) is tracing

    @app.handler()
    async def both(data: Any) -> None:
        return None

    await app.enqueue("both")
    await drain(app)
    assert registry.get_sample_value("aiojobs_pg_jobs_completed_total", {"handler": "both", "queue": "default"}) == 1
    assert len(spans(exporter, "run default")) == 1

    metrics.unregister()
    assert observers_of(app) == (tracing,)
    uninstrument(app)
    assert app.observer is None and app.tracing is None


async def test_instrument_refuses_what_is_no_provider(app: App, provider: TracerProvider) -> None:
    with pytest.raises(ValidationError, match="tracer_provider: must be an opentelemetry TracerProvider"):
        instrument(app, "jaeger")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="link_only"):
        instrument(app, provider, link_only="yes")  # type: ignore[arg-type]
    tracing = instrument(app, provider)
    assert instrument(app) is tracing  # again, asking nothing new: the same


async def test_a_run_whose_outcome_is_never_committed_is_ended_when_the_worker_stops(
        app: App, tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    @app.handler()
    async def lost(data: Any) -> None:
        return None

    await app.enqueue("lost")
    worker = app.create_worker(burst=True)
    # The completion's fence refuses the outcome (the job was deleted meanwhile): no `finished` for its span.
    original = worker.executor.execute

    async def delete_first(job: Any) -> Any:
        await app.delete_job(job.id)
        return await original(job)

    worker.executor.execute = delete_first  # type: ignore[method-assign]
    await worker.run()
    await eventually(lambda: len(spans(exporter, "run default")) == 1)
    (run,) = spans(exporter, "run default")
    assert (run.attributes or {})["aiojobs_pg.outcome"] == "abandoned"
    assert run.status.status_code is StatusCode.ERROR
    assert tracing.open_runs() == 0
    assert trace.get_current_span().get_span_context().is_valid is False  # nothing leaked into the test's context
