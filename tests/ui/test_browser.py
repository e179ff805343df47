"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright, against
`indelible run` in a subprocess over TCP. Each step saves a screenshot under
test-artifacts/ui/; the browser console must stay free of errors (a CSP violation is one)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.core.bundle import verify_bundle
from indelible.core.note import parse_vkey
from tests.browser import ARGS, ARTIFACTS, chromium_path, unavailable
from tests.factories import billing_event
from tests.server.test_live import Server, bearer

pytestmark = pytest.mark.timeout(180)


def invoice_events() -> list[dict[str, Any]]:
    """INV-77 is created, opened, paid; and other invoices around it."""
    record = {"type": "invoice", "id": "INV-77"}
    return [
        *(billing_event(n) for n in range(30)),
        billing_event(1000, target=record, action="create", occurred_at="2025-11-23T10:00:00.000Z",
                      changes=[{"field": "status", "after": "draft"},
                               {"field": "amount_due", "after": 1200}]),
        billing_event(1001, target=record, occurred_at="2025-11-23T11:00:00.000Z",
                      changes=[{"field": "status", "before": "draft", "after": "open"}]),
        billing_event(1002, target=record, occurred_at="2025-11-23T12:00:00.000Z",
                      changes=[{"field": "status", "before": "open", "after": "paid"},
                               {"field": "amount_due", "before": 1200, "after": 0}]),
    ]  # fmt: skip


class Live:
    def __init__(self, server: Server, admin: str, auditor: str, first: int) -> None:
        self.server, self.admin, self.auditor = server, admin, auditor
        self.base = server.base
        self.first = first  # the seq of invoice_events()[0]

    def seq(self, n: int) -> int:
        """The seq of billing event ``n`` (n < 30) or of INV-77's ``n``-th event (30-32)."""
        return self.first + n


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if chromium_path() is None:
        unavailable("no /usr/bin/chromium, nor a chromium on PATH")
    server = Server(tmp_path_factory.mktemp("ui-live") / "data")
    try:
        admin = server.admin_key()
        assert admin is not None
        with httpx.Client(base_url=server.base, headers=bearer(admin), timeout=10) as client:
            made = client.post("/v1/keys", json={"name": "Dana (compliance)", "role": "auditor"})
            assert made.status_code == 201, made.text
            posted = client.post("/v1/events", json=invoice_events())
            assert posted.status_code == 201, posted.text
            last = posted.json()["receipts"][-1]["seq"]
            deadline = time.monotonic() + 10
            while client.get("/v1/anchors").json().get("size", 0) <= last:
                assert time.monotonic() < deadline, "no final checkpoint covered the events"
                time.sleep(0.1)
        first = posted.json()["receipts"][0]["seq"]
        yield Live(server, admin, made.json()["token"], first)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    """A fresh browser context signed in as the auditor; console errors fail the test."""
    context = browser.new_context(base_url=live.base, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)  # fmt: skip
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda message: message.type == "error" and errors.append(message.text))
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto("/")
    opened.fill("#key", live.auditor)
    opened.click("button[type=submit]")
    opened.wait_for_url(re.compile(r"/search$"))
    try:
        yield opened
        assert errors == [], errors
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_login_redirects_to_search_and_sets_no_readable_cookie(browser: Any, live: Live) -> None:
    context = browser.new_context(base_url=live.base)
    try:
        page = context.new_page()
        page.goto("/entities/invoice/INV-77")
        assert "/login" in page.url
        page.fill("#key", "idl_0000000000000000_wrong")
        page.click("button[type=submit]")
        assert "not in the form" in page.inner_text("[role=alert]")
        page.fill("#key", live.auditor)
        shot(page, "01-login")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/entities/invoice/INV-77$"))
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert live.auditor not in cookie["value"]
    finally:
        context.close()


def test_search_filters_and_pages(page: Any, live: Live) -> None:
    page.fill("input[name=actor_id]", "user-3")
    page.select_option("select[name=order]", "asc")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#results")
    seqs = [int(cell) for cell in page.locator("#results td.num").all_inner_texts()]
    assert seqs == [live.seq(n) for n in range(30) if n % 7 == 3]
    assert page.locator("#results tbody tr").first.inner_text().count("user-3") == 1
    shot(page, "02-search")
    page.goto("/search?q=cus-5")
    texts = page.locator("#results tbody tr").all_inner_texts()
    assert len(texts) == len([n for n in range(30) if n % 11 == 5])


def test_event_page_shows_the_diff_and_verifies(page: Any) -> None:
    page.goto("/search?target_type=invoice&target_id=INV-77&order=asc")
    page.click("#results tbody tr:nth-child(3) td:nth-child(3) a")
    page.wait_for_selector("#diff")
    rows = page.locator("#diff tbody tr").all_inner_texts()
    assert [re.sub(r"\s+", " ", row).strip() for row in rows] == [
        "status open paid",
        "amount_due 1200 0",
    ]
    assert re.fullmatch(r"[0-9a-f]{64}", page.inner_text("#leaf-hash"))
    page.click("#verify")
    result = page.wait_for_selector("#verify-result")
    assert result.inner_text().startswith("VERIFIED")
    assert "signature valid" in result.inner_text()
    shot(page, "03-event-verified")


def test_entity_timeline(page: Any, live: Live) -> None:
    page.goto("/search?target_id=INV-77")
    page.click("#results tbody tr:first-child a[href^='/entities/']")
    page.wait_for_selector("#timeline")
    items = page.locator("#timeline > li").all_inner_texts()
    assert len(items) == 3 and f"seq {live.seq(32)}" in items[0]  # newest first
    assert "paid" in page.inner_text("#state-fields")  # the state now
    shot(page, "04-entity-timeline")


def test_state_at_a_chosen_time(page: Any, live: Live) -> None:
    page.goto("/entities/invoice/INV-77")
    page.fill("#at", "2025-11-23T11:30")
    page.click("#show-state")
    page.wait_for_url(re.compile(r"at=2025-11-23T11%3A30"))
    fields = {
        row.split("\t")[0]: row.split("\t")[1]
        for row in page.locator("#state-fields tbody tr").all_inner_texts()
    }
    assert fields == {"status": "open", "amount_due": "1200"}
    producers = page.locator("#producers li").all_inner_texts()
    assert len(producers) == 2 and f"seq {live.seq(31)}" in producers[0]
    shot(page, "05-state-at-t")


def test_export_downloads_a_bundle_that_verifies(page: Any, live: Live, tmp_path: Path) -> None:
    page.goto("/export?target_type=invoice&target_id=INV-77")
    page.fill("input[name=reason]", "auditor request #42")
    shot(page, "06-export")
    with page.expect_download() as download_info:
        page.click("#export")
    download = download_info.value
    assert download.suggested_filename == "evidence-invoice-INV-77.json"
    saved = tmp_path / "bundle.json"
    download.save_as(str(saved))
    with httpx.Client(base_url=live.base, headers=bearer(live.admin), timeout=10) as client:
        vkey = client.get("/v1/vkey").text.strip()
        exported = client.get("/v1/events", params={"event_type": "audit.exported"}).json()
    report = verify_bundle(saved.read_bytes(), parse_vkey(vkey))
    assert [entry["seq"] for entry in report.events] == [live.seq(n) for n in (30, 31, 32)]
    (event,) = [item["event"] for item in exported["items"]]
    assert event["reason"] == "auditor request #42" and event["context"]["source"] == "ui"


def test_integrity_page(page: Any) -> None:
    page.goto("/integrity")
    assert int(page.inner_text("#tree-size")) >= 33
    assert page.locator("#hourly-chart rect").count() == 24
    page.click("#verify-log")
    assert "PASSED" in page.inner_text("#verify-now-result")
    assert "passed" in page.inner_text("#last-verification")
    shot(page, "07-integrity")
