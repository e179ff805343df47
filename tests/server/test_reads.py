"""Queries and forensics through the HTTP surface: filters, keyset pages, export, entity
history and state at time T."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from indelible.core.entry import decode
from indelible.core.tabular import CSV_COLUMNS, unescape_control
from tests.factories import BASE_MS, billing_event, timestamp
from tests.server.test_api import Service, assert_error_shape, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ev(n: int, **overrides: Any) -> dict[str, Any]:
    return billing_event(n, salt=3, **overrides)


# Twelve events: actors user-0..6, invoices INV-0..3, two payment events, one failure.
EVENTS = [
    ev(n, target={"type": "invoice", "id": f"INV-{n % 4}"}, occurred_at=timestamp(BASE_MS + n))
    for n in range(10)
] + [
    ev(
        10,
        event_type="payment.captured",
        action="capture",
        target={"type": "payment", "id": "PAY-1"},
        related=[{"type": "invoice", "id": "INV-1"}],
        occurred_at=timestamp(BASE_MS + 10),
    ),
    ev(
        11,
        event_type="payment.failed",
        action="capture",
        outcome="failure",
        target={"type": "payment", "id": "PAY-2"},
        context={"ip": "198.51.100.9", "request_id": "req-special", "source": "app"},
        occurred_at=timestamp(BASE_MS + 11),
    ),
]


@pytest.fixture
async def service(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Service]:
    async with running(tmp_path) as started:
        response = await started.post(EVENTS)
        assert response.status_code == 201, response.text
        yield started


async def seqs(service: Service, **params: Any) -> list[int]:
    response = await service.client.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    return [item["seq"] for item in response.json()["items"]]


async def test_each_filter_selects_exactly_its_events(service: Service) -> None:
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"actor_id": "user-3"}, [3, 10]),
        ({"actor_type": "user", "target_type": "payment"}, [10, 11]),
        ({"target_type": "invoice", "target_id": "INV-2"}, [2, 6]),
        ({"event_type": "payment.failed"}, [11]),
        ({"event_type": "payment.*"}, [10, 11]),
        ({"action": "capture", "outcome": "success"}, [10]),
        ({"request_id": "req-special"}, [11]),
        ({"ip": "198.51.100.9"}, [11]),
        ({"occurred_from": timestamp(BASE_MS + 3), "occurred_to": timestamp(BASE_MS + 5)}, [3, 4]),
        ({"event_type": "invoice.*", "occurred_from": timestamp(BASE_MS + 8)}, [8, 9]),
        ({"target_id": "INV-404"}, []),
    ]
    for params, expected in cases:
        assert await seqs(service, **params) == expected, params
    everything = await seqs(service, event_type="invoice.*", limit=1000)
    assert everything == list(range(10))
    received = await seqs(
        service, received_from=timestamp(BASE_MS), received_to="2999-01-01T00:00:00Z"
    )
    assert received[:12] == list(range(12))


async def test_pages_cover_everything_once_in_either_order(service: Service) -> None:
    for order, expected in (("asc", list(range(12))), ("desc", list(range(11, -1, -1)))):
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"order": order, "limit": 5}
            if cursor:
                params["cursor"] = cursor
            response = await service.client.get(
                "/v1/events", params={**params, "occurred_to": timestamp(BASE_MS + 12)}
            )
            body = response.json()
            seen += [item["seq"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, order


async def test_bad_query_parameters_are_refused_with_their_reason(service: Service) -> None:
    size = service.size
    page = (await service.client.get("/v1/events", params={"limit": 1})).json()
    bad: list[tuple[dict[str, Any], int]] = [
        ({"actor": "user-1"}, 400),  # a misspelt filter is refused, never ignored
        ({"occurred_from": "yesterday"}, 422),  # not of the declared form
        ({"occurred_from": "2026-01-01T00:00:00+02:00"}, 422),
        ({"occurred_from": "2026-13-01T00:00:00Z"}, 400),  # of the form, but no such date
        (
            {"occurred_from": timestamp(BASE_MS + 5), "occurred_to": timestamp(BASE_MS + 1)},
            400,
        ),
        ({"event_type": "Invoice.Updated"}, 400),
        ({"event_type": "*"}, 400),
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"order": "sideways"}, 422),
        ({"cursor": "zzz"}, 422),
        ({"cursor": page["next_cursor"], "order": "desc"}, 400),  # the other order's cursor
        ({"target_id": "x" * 257}, 422),
        ({"actor_id": ["user-1", "user-2"]}, 400),  # which one would filter is a guess
    ]
    for params, status in bad:
        assert_error_shape(await service.client.get("/v1/events", params=params), status)
    assert service.size == size + 1  # only the one good read was recorded


async def test_get_one_event_by_id_returns_it_as_stored(service: Service) -> None:
    wanted = EVENTS[10]
    response = await service.client.get(f"/v1/events/{wanted['event_id']}")
    body = response.json()
    assert body["seq"] == 10 and body["event"] == wanted and len(body["leaf_hash"]) == 64
    assert_error_shape(await service.client.get("/v1/events/nope"), 404, "not_found")


async def test_history_lists_every_event_touching_the_record_including_related(
    service: Service,
) -> None:
    history = await service.client.get("/v1/entities/invoice/INV-1/history")
    assert [item["seq"] for item in history.json()["items"]] == [1, 5, 9, 10]
    backwards = await service.client.get(
        "/v1/entities/invoice/INV-1/history", params={"order": "desc", "limit": 3}
    )
    body = backwards.json()
    assert [item["seq"] for item in body["items"]] == [10, 9, 5]
    rest = await service.client.get(
        "/v1/entities/invoice/INV-1/history",
        params={"order": "desc", "cursor": body["next_cursor"]},
    )
    assert [item["seq"] for item in rest.json()["items"]] == [1]
    unknown = await service.client.get("/v1/entities/invoice/INV-1/history", params={"x": 1})
    assert_error_shape(unknown, 400)


async def test_state_at_t_replays_changes_and_reports_gaps(tmp_path: Path) -> None:
    def change(n: int, at: int, changes: list[dict[str, Any]], action: str = "update") -> Any:
        return billing_event(
            n,
            salt=5,
            action=action,
            target={"type": "customer", "id": "CUS-9"},
            occurred_at=timestamp(BASE_MS + at),
            changes=changes,
        )

    history = [
        change(0, 0, [{"field": "email", "after": "a@x.test"}], "create"),
        change(1, 10, [{"field": "email", "before": "a@x.test", "after": "b@x.test"}]),
        # a gap: the stored before is not what the replay holds
        change(2, 20, [{"field": "email", "before": "zzz@x.test", "after": "c@x.test"}]),
    ]
    async with running(tmp_path) as service:
        assert (await service.post(history)).status_code == 201

        async def state(at: int) -> dict[str, Any]:
            response = await service.client.get(
                "/v1/entities/customer/CUS-9/state", params={"at": timestamp(BASE_MS + at)}
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        early = await state(15)
        assert early["exists"] is True and early["fields"] == {"email": "b@x.test"}
        assert early["seqs"] == [0, 1] and early["gaps"] == [] and early["complete"] is True
        late = await state(25)
        assert late["fields"] == {"email": "c@x.test"} and late["seqs"] == [0, 1, 2]
        assert late["complete"] is True  # the history starts with its create
        assert late["gaps"] == [
            {"seq": 2, "field": "email", "expected": "b@x.test", "found": "zzz@x.test"}
        ]
        before = await state(-5)
        assert before["seqs"] == [] and before["exists"] is None
        bad = await service.client.get("/v1/entities/customer/CUS-9/state", params={"at": "now"})
        assert_error_shape(bad, 422)


async def test_state_refuses_to_replay_more_than_the_limit(tmp_path: Path) -> None:
    from indelible.server.runtime import ServerLimits

    async with running(tmp_path, limits=ServerLimits(max_state_events=2)) as service:
        await service.post([billing_event(n * 50) for n in range(3)])  # all on INV-0
        response = await service.client.get("/v1/entities/invoice/INV-0/state")
        assert_error_shape(response, 413, "limit_exceeded")
        assert response.json()["error"]["details"]["limit"] == "max_state_events"


# ---- export

HOSTILE = [
    '=HYPERLINK("http://evil.test","x")',
    "+1+1",
    "@SUM(A1)",
    "-2+3",
    "line one\r\nline two",
    "\x1b[31mred\x1b[0m",
    "tab\there",
]


async def test_csv_export_is_safe_against_formula_injection_and_reversible(
    tmp_path: Path,
) -> None:
    events = [
        billing_event(n, salt=7, reason=text, data={"note": text}) for n, text in enumerate(HOSTILE)
    ]
    async with running(tmp_path) as service:
        assert (await service.post(events)).status_code == 201
        response = await service.client.get(
            "/v1/events/export", params={"format": "csv", "event_type": "invoice.*"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["x-export-count"] == str(len(HOSTILE))
        rows = list(csv.reader(io.StringIO(response.text, newline="")))
        assert tuple(rows[0]) == CSV_COLUMNS
        reason = CSV_COLUMNS.index("reason")
        for row, text in zip(rows[1:], HOSTILE, strict=True):
            cell = row[reason]
            assert "\x1b" not in cell and "\r" not in cell and "\n" not in cell
            assert cell[:1] not in ("=", "+", "-", "@") or cell == text
            restored = unescape_control(cell[1:] if cell.startswith("'") else cell)
            assert restored == text
        # NDJSON carries the events verbatim, as stored.
        lines = await service.client.get("/v1/events/export", params={"event_type": "invoice.*"})
        exported = [json.loads(line)["event"] for line in lines.text.splitlines()]
        assert exported == events
        # And the stored leaf holds the bytes as sent.
        row = service.store.get_entry(service.log_id, 5)
        assert decode(row.leaf, row.personal).event["reason"] == HOSTILE[5]


async def test_an_export_over_the_limit_is_refused_before_it_starts(tmp_path: Path) -> None:
    from indelible.server.runtime import ServerLimits

    async with running(tmp_path, limits=ServerLimits(max_export_events=3)) as service:
        await service.post([billing_event(n) for n in range(4)])
        size = service.size
        response = await service.client.get("/v1/events/export", params={"format": "csv"})
        assert_error_shape(response, 413, "limit_exceeded")
        assert response.json()["error"]["details"] == {
            "limit": "max_export_events",
            "maximum": 3,
            "actual": 4,
        }
        assert service.size == size  # refused before anything was read: nothing to record
        narrow = await service.client.get(
            "/v1/events/export", params={"format": "csv", "target_id": "INV-1"}
        )
        assert narrow.status_code == 200 and narrow.headers["x-export-count"] == "1"


async def test_a_long_export_streams_every_row_once_in_seq_order(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        for start in range(0, 2_500, 1_000):
            batch = [billing_event(n) for n in range(start, min(start + 1_000, 2_500))]
            assert (await service.post(batch)).status_code == 201
        response = await service.client.get(
            "/v1/events/export", params={"event_type": "invoice.updated"}
        )
        lines = response.text.splitlines()
        assert [json.loads(line)["seq"] for line in lines] == list(range(2_500))


async def test_verify_reports_the_whole_tenant_log(service: Service) -> None:
    response = await service.client.post("/v1/verify")
    body = response.json()
    assert body["ok"] is True and body["log"] == "acme" and body["size"] == 12
