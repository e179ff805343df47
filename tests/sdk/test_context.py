"""The audit context: nesting, inheritance, isolation between threads and tasks, jobs."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import indelible
from indelible.sdk import Client, Context, context, current_context, job


def test_nested_blocks_override_what_they_name_and_restore_on_exit() -> None:
    assert current_context() == Context()
    with context(actor={"id": "u-1", "type": "user"}, request_id="r-1", ip="203.0.113.7"):
        with context(reason="ticket 9", request_id="r-2") as inner:
            assert inner is current_context()
            assert (inner.request_id, inner.ip, inner.reason) == ("r-2", "203.0.113.7", "ticket 9")
            assert inner.event_actor() == {"id": "u-1", "type": "user"}
        assert current_context().request_id == "r-1" and current_context().reason is None
    assert current_context() == Context()


def test_the_context_is_frozen() -> None:
    actor = {"id": "u-1", "type": "user"}
    with context(actor=actor) as ctx:
        actor["id"] = "changed later"  # the caller's dict does not leak in
        assert ctx.actor is not None and ctx.actor["id"] == "u-1"
        with pytest.raises(TypeError):
            ctx.actor["id"] = "x"  # type: ignore[index]
        with pytest.raises(AttributeError):
            ctx.reason = "x"  # type: ignore[misc]
    with pytest.raises(TypeError), context(actor="u-1"):  # type: ignore[arg-type]
        pass


def test_threads_and_tasks_do_not_see_each_others_context() -> None:
    seen: dict[str, str | None] = {}

    def worker(name: str) -> None:
        with context(request_id=name):
            barrier.wait()
            seen[name] = current_context().request_id

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": "a", "b": "b"}

    async def task(name: str) -> str | None:
        with context(request_id=name):
            await asyncio.sleep(0.01)
            return current_context().request_id

    async def main() -> list[str | None]:
        return list(await asyncio.gather(task("x"), task("y")))

    assert asyncio.run(main()) == ["x", "y"]


def test_job_names_a_service_identity_and_the_top_level_names_work(tmp_path: Path) -> None:
    client = Client(None, outbox=tmp_path / "o.sqlite3")
    try:
        with indelible.job("nightly-invoicer", run_id="2026-12-05"):
            assert indelible.current_context().actor == {"id": "nightly-invoicer", "type": "job"}
            event = client.build_event("invoice.issued")
            with indelible.context(actor={"id": "u-2", "type": "user"}):
                override = client.build_event("invoice.issued")
        assert event["actor"] == {"id": "nightly-invoicer", "type": "job"}
        assert event["context"] == {"request_id": "2026-12-05", "source": "job"}
        assert override["actor"] == {"id": "u-2", "type": "user"}
        explicit = client.build_event(
            "invoice.issued", actor={"id": "svc", "type": "service"}, context={"source": "import"}
        )
        assert explicit["actor"]["id"] == "svc" and explicit["context"] == {"source": "import"}
    finally:
        client.close()
    with pytest.raises(ValueError), job(""):
        pass
    with pytest.raises(AttributeError):
        _ = indelible.no_such_name  # type: ignore[attr-defined]
    assert job is indelible.job
