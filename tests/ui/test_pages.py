"""The web UI in process (httpx ASGI transport) against a real SQLite store: sessions, roles,
tenants, CSRF, cookies, escaping, and the meta-audit of every page of audit data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from indelible.core.bundle import verify_bundle
from indelible.core.note import parse_vkey
from indelible.server.runtime import UiOptions
from indelible.server.ui.web import CSP
from tests.factories import billing_event, event_id
from tests.ui.helpers import Ui, csrf_of, login, running_ui, signed_in

pytestmark = pytest.mark.anyio

EVENT = billing_event(3)
DATA_PAGES = [
    "/search",
    "/search?q=INV-3&event_type=invoice.*",
    f"/events/{EVENT['event_id']}",
    "/entities/invoice/INV-3",
    "/entities/invoice/INV-3?at=2025-11-23T12:00",
]
ALL_GET_PAGES = [*DATA_PAGES, "/integrity", "/export", "/admin/keys", "/admin/settings"]
POSTS = [
    f"/events/{EVENT['event_id']}/verify",
    "/integrity/verify",
    "/export",
    "/admin/keys",
    "/admin/settings",
    "/admin/tenants",
    "/logout",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def ui(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Ui]:
    async with running_ui(tmp_path) as started:
        await started.post_events([billing_event(n) for n in range(60)])
        started.wait_published()
        yield started


async def test_no_page_shows_data_without_a_session(ui: Ui) -> None:
    async with ui.browser() as browser:
        for path in [*ALL_GET_PAGES, "/admin/tenants"]:
            answered = await browser.get(path)
            assert answered.status_code == 303, path
            assert answered.headers["location"] == "/login?next=" + quote(path, safe=""), path
        for path in POSTS:
            answered = await browser.post(path, data={"csrf": "x"})
            assert answered.status_code == 303 and answered.headers["location"].startswith(
                "/login"
            ), path
        # a forged cookie (a real key id, a made-up MAC) is no session either
        key_id = ui.admin.split("_")[1]
        browser.cookies.set("indelible_session", f"{key_id}.99999999999999.{'0' * 32}.{'A' * 43}")
        assert (await browser.get("/search")).status_code == 303
    assert ui.audit() == []  # nothing was read


async def test_login_sets_a_strict_httponly_cookie_without_the_key(ui: Ui) -> None:
    async with ui.browser() as browser:
        answered = await login(browser, ui.admin, "/entities/invoice/INV-3")
        assert answered.status_code == 303
        assert answered.headers["location"] == "/entities/invoice/INV-3"
        cookie = next(
            value
            for name, value in answered.headers.multi_items()
            if name == "set-cookie" and value.startswith("indelible_session=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain http, ui_secure_cookie=auto
        secret = ui.admin.split("_", 2)[2]
        assert secret not in cookie and ui.admin not in cookie
        assert (await browser.get("/search")).status_code == 200
    logins = ui.audit("audit.login")
    assert [event["actor"]["name"] for event in logins] == ["test admin"]
    assert logins[0]["context"]["source"] == "ui"


async def test_over_https_the_cookie_is_secure_and_host_prefixed(ui: Ui) -> None:
    async with ui.browser("https://indelible.test") as browser:
        answered = await login(browser, ui.admin)
        cookie = answered.headers["set-cookie"]
        assert cookie.startswith("__Host-indelible_session=")
        assert "secure" in cookie.lower()
        assert (await browser.get("/search")).status_code == 200


async def test_a_redirect_after_login_never_leaves_the_site(ui: Ui) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "search"):
        async with ui.browser() as browser:
            answered = await login(browser, ui.admin, target)
            assert answered.headers["location"] == "/search", target


async def test_a_failed_login_is_limited_and_audited_as_in_the_api(tmp_path: Path) -> None:
    async with running_ui(tmp_path, auth_fail_limit=3) as ui, ui.browser() as browser:
        bad = "idl_" + "0" * 16 + "_" + "A" * 43
        statuses = [(await login(browser, bad)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        page = await login(browser, ui.admin)  # blocked even with the right key
        assert page.status_code == 429
        operator = ui.store.list_logs()[0].log_id
        assert operator == ui.log_id
        failed = ui.audit("audit.auth_failed")
        assert len(failed) == 3
        assert failed[0]["data"] == {
            "reason": "unknown API key",
            "route": "/login",
            "claimed_key_id": "0" * 16,
        }
        assert len(ui.audit("audit.auth_rate_limited")) == 1


async def test_login_and_post_forms_refuse_a_missing_or_foreign_csrf_token(ui: Ui) -> None:
    async with ui.browser() as browser:
        await browser.get("/login")
        refused = await browser.post("/login", data={"key": ui.admin, "csrf": "forged"})
        assert refused.status_code == 403
        assert "indelible_session" not in browser.cookies
    async with signed_in(ui, ui.admin) as browser, signed_in(ui, ui.admin) as other:
        foreign = csrf_of((await other.get("/admin/keys")).text)  # another session's token
        before = len(ui.runtime.keys.list(ui.log_id))
        for token in (None, foreign, ""):
            form = {"name": "sneaky", "role": "admin"}
            if token is not None:
                form["csrf"] = token
            answered = await browser.post("/admin/keys", data=form)
            assert answered.status_code == 403, token
            assert "CSRF" in answered.text
        assert len(ui.runtime.keys.list(ui.log_id)) == before
        good = csrf_of((await browser.get("/admin/keys")).text)
        made = await browser.post(
            "/admin/keys", data={"name": "fine", "role": "reader", "csrf": good}
        )
        assert made.status_code == 200 and "idl_" in made.text
        assert len(ui.runtime.keys.list(ui.log_id)) == before + 1


async def test_every_page_has_the_security_headers(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as browser:
        for path in [*ALL_GET_PAGES, "/login", "/static/ui.css", "/no-such-page"]:
            answered = await browser.get(path)
            headers = answered.headers
            assert headers["content-security-policy"] == CSP, path
            assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            if answered.headers["content-type"].startswith("text/html"):
                assert "<script>" not in answered.text and " on" + "click=" not in answered.text
        timed = await browser.get("/search")
        assert re.fullmatch(r"app;dur=[0-9.]+", timed.headers["server-timing"])


async def test_every_page_of_audit_data_writes_its_audit_read(ui: Ui) -> None:
    routes = {
        "/search": ["events"],
        "/search?q=INV-3&event_type=invoice.*": ["events"],
        f"/events/{EVENT['event_id']}": ["event"],
        "/entities/invoice/INV-3": ["history", "state"],
        "/entities/invoice/INV-3?at=2025-11-23T12:00": ["history", "state"],
    }
    async with signed_in(ui, ui.admin) as browser:
        for path, expected in routes.items():
            before = len(ui.audit())
            answered = await browser.get(path + ("&" if "?" in path else "?") + "reason=audit+test")
            assert answered.status_code == 200, path
            reads = ui.audit()[before:]
            assert sorted(event["data"]["route"] for event in reads) == expected, path
            for event in reads:
                assert event["actor"]["id"] == ui.admin.split("_")[1]
                assert event["context"]["source"] == "ui"
                assert event["reason"] == "audit test"
        text_read = next(e for e in ui.audit() if "text" in e["data"])
        assert text_read["data"]["filter"] == {"event_type": "invoice.*"}
        # INV-3 and INV-30..39: the text is found anywhere in the event
        assert text_read["data"]["results"] == sum(
            1 for n in range(60) if "INV-3" in f"INV-{n % 50}"
        )
        # the verify action reads the event again, and says so
        page = await browser.get(f"/events/{EVENT['event_id']}")
        before = len(ui.audit())
        await browser.post(f"/events/{EVENT['event_id']}/verify", data={"csrf": csrf_of(page.text)})
        assert [e["data"] for e in ui.audit()[before:]] == [
            {"route": "event", "event_id": EVENT["event_id"], "verify": True, "results": 1}
        ]


async def test_search_filters_pages_by_keyset_and_searches_text(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as browser:
        first = await browser.get("/search", params={"actor_id": "user-3"})
        seqs = [int(s) for s in re.findall(r'<td class="num">([0-9]+)</td>', first.text)]
        expected = sorted((n for n in range(60) if n % 7 == 3), reverse=True)
        assert seqs == expected  # newest first; fewer than a page
        assert 'id="next-page"' not in first.text
        # 60 events + their reads: two pages, nothing repeated or skipped
        page1 = await browser.get("/search", params={"event_type": "invoice.updated"})
        seqs1 = [int(s) for s in re.findall(r'<td class="num">([0-9]+)</td>', page1.text)]
        link = re.search(r'href="([^"]+)" id="next-page"', page1.text)
        assert link is not None and len(seqs1) == 50
        page2 = await browser.get(link.group(1).replace("&amp;", "&"))
        seqs2 = [int(s) for s in re.findall(r'<td class="num">([0-9]+)</td>', page2.text)]
        assert seqs1 + seqs2 == list(range(59, -1, -1))
        text = await browser.get("/search", params={"q": "cus-4", "order": "asc"})
        seqs = [int(s) for s in re.findall(r'<td class="num">([0-9]+)</td>', text.text)]
        assert seqs == [n for n in range(60) if n % 11 == 4]
        bad = await browser.get("/search", params={"occurred_from": "yesterday"})
        assert bad.status_code == 400 and "occurred_from" in bad.text


async def test_event_page_shows_the_diff_seq_leaf_hash_and_verifies(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as browser:
        page = await browser.get(f"/events/{EVENT['event_id']}")
        assert page.status_code == 200
        async with ui.api() as api:
            entry = (await api.get(f"/v1/events/{EVENT['event_id']}")).json()
        assert f'<dd id="seq">{entry["seq"]}</dd>' in page.text
        assert entry["leaf_hash"] in page.text
        diff = page.text[page.text.index('id="diff"') :]
        assert '<th scope="row">amount_due</th>' in diff
        assert '<td class="before">300</td>' in diff.replace("\n", "")
        verified = await browser.post(
            f"/events/{EVENT['event_id']}/verify", data={"csrf": csrf_of(page.text)}
        )
        assert "<strong>VERIFIED</strong>" in verified.text
        assert f"entry {entry['seq']} is included in the signed tree" in verified.text
        missing = await browser.get(f"/events/{event_id(999)}")
        assert missing.status_code == 404 and "no event" in missing.text


async def test_entity_page_shows_the_timeline_and_the_state_at_a_time(ui: Ui) -> None:
    await ui.post_events(
        [
            billing_event(100, target={"type": "invoice", "id": "INV-X"}, changes=[
                {"field": "status", "after": "draft"}], action="create",
                occurred_at="2025-11-23T10:00:00.000Z"),
            billing_event(101, target={"type": "invoice", "id": "INV-X"}, changes=[
                {"field": "status", "before": "draft", "after": "open"}],
                occurred_at="2025-11-23T11:00:00.000Z"),
            billing_event(102, target={"type": "invoice", "id": "INV-X"}, changes=[
                {"field": "status", "before": "draft", "after": "paid"}],
                occurred_at="2025-11-23T12:00:00.000Z"),
        ]
    )  # fmt: skip
    async with signed_in(ui, ui.admin) as browser:
        timeline = await browser.get("/entities/invoice/INV-X")
        items = re.findall(r"seq ([0-9]+)</span> <span class=\"time\">", timeline.text)
        assert len(items) >= 3
        at_1030 = await browser.get("/entities/invoice/INV-X", params={"at": "2025-11-23T10:30"})
        state = at_1030.text[at_1030.text.index('id="state-fields"') :]
        assert '<th scope="row">status</th><td>draft</td>' in state
        later = await browser.get("/entities/invoice/INV-X", params={"at": "2025-11-23T12:30:00Z"})
        assert '<th scope="row">status</th><td>paid</td>' in later.text
        gaps = later.text[later.text.index('id="gaps"') :]
        assert "<td>status</td><td>open</td><td>draft</td>" in gaps.replace("\n", "")
        producers = later.text[later.text.index('id="producers"') :]
        assert producers[: producers.index("</ul>")].count("<li>") == 3


async def test_audit_data_is_shown_as_text_never_as_markup(ui: Ui) -> None:
    script = '<script>alert("x")</script>'
    hostile = billing_event(
        500,
        actor={"id": script, "type": "user", "name": '"><img src=x onerror=alert(1)>'},
        target={"type": "invoice", "id": "</td><script>alert(2)</script>"},
        changes=[{"field": "<b>f</b>", "before": script, "after": {"x": script}}],
        data={"note": script},
    )
    await ui.post_events([hostile])
    async with signed_in(ui, ui.admin) as browser:
        pages = [
            await browser.get("/search", params={"q": "alert"}),
            await browser.get(f"/events/{hostile['event_id']}"),
            await browser.get("/entities/" + quote(hostile["target"]["type"]) + "/" + quote(
                hostile["target"]["id"], safe="")),
        ]  # fmt: skip
        for page in pages:
            assert page.status_code == 200
            assert (
                "<script>" not in page.text and "<img" not in page.text and "<b>" not in page.text
            )
            assert "&lt;script&gt;alert(" in page.text


async def test_a_reader_cannot_reach_admin_export_or_verify(ui: Ui) -> None:
    reader = await ui.key("reader")
    async with signed_in(ui, reader) as browser:
        for path in [*DATA_PAGES, "/integrity"]:
            assert (await browser.get(path)).status_code == 200, path
        csrf = csrf_of((await browser.get("/integrity")).text)
        assert 'href="/admin/keys"' not in (await browser.get("/search")).text
        for path in ("/admin/keys", "/admin/settings", "/admin/tenants", "/export"):
            answered = await browser.get(path)
            assert answered.status_code == 403, path
            assert "forbidden" in answered.text
        for path in ("/admin/keys", "/admin/tenants", "/integrity/verify", "/export"):
            answered = await browser.post(path, data={"csrf": csrf, "name": "x", "role": "admin"})
            assert answered.status_code == 403, path
    denied = ui.audit("audit.access_denied")
    assert len(denied) == 8
    assert {event["data"]["role"] for event in denied} == {"reader"}
    assert {event["context"]["source"] for event in denied} == {"ui"}
    writer = await ui.key("writer")
    async with signed_in(ui, writer) as browser:
        assert (await browser.get("/search")).status_code == 403
        assert (await browser.get("/integrity")).status_code == 200


async def test_a_revoked_key_ends_its_sessions_and_logout_ends_one(ui: Ui) -> None:
    auditor = await ui.key("auditor")
    async with signed_in(ui, auditor) as browser, signed_in(ui, ui.admin) as admin:
        assert (await browser.get("/search")).status_code == 200
        keys = await admin.get("/admin/keys")
        key_id = auditor.split("_")[1]
        revoked = await admin.post(
            f"/admin/keys/{key_id}/revoke", data={"csrf": csrf_of(keys.text)}
        )
        assert revoked.status_code == 303
        assert (await browser.get("/search")).status_code == 303
        kept = admin.cookies["indelible_session"]
        page = await admin.get("/search")
        out = await admin.post("/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await admin.get("/search")).status_code == 303
        admin.cookies.set("indelible_session", kept)  # the old cookie, replayed
        assert (await admin.get("/search")).status_code == 303
    assert len(ui.audit("audit.logout")) == 1
    assert len(ui.audit("audit.key_revoked")) == 1


async def test_tenants_are_isolated_in_the_ui_as_in_the_api(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as admin:
        page = await admin.get("/admin/tenants")
        made = await admin.post(
            "/admin/tenants", data={"name": "globex", "csrf": csrf_of(page.text)}
        )
        assert made.status_code == 200
        token = re.search(r'id="new-token">(idl_[^<]+)<', made.text)
        assert token is not None
    globex = token.group(1)
    async with signed_in(ui, globex) as other:
        found = await other.get("/search")
        assert found.status_code == 200 and "invoice.updated</a>" not in found.text
        assert "audit.tenant_created</a>" in found.text  # its own log: its own events
        assert (await other.get(f"/events/{EVENT['event_id']}")).status_code == 404
        timeline = await other.get("/entities/invoice/INV-3")
        assert "No event touches this record." in timeline.text
        # a globex admin is not an operator admin: no tenants page
        assert (await other.get("/admin/tenants")).status_code == 403
        keys = await other.get("/admin/keys")
        assert f"<code>{ui.admin.split('_')[1]}</code>" not in keys.text  # not a key of globex
        revoke = await other.post(
            f"/admin/keys/{ui.admin.split('_')[1]}/revoke", data={"csrf": csrf_of(keys.text)}
        )
        assert revoke.status_code == 404
    globex_id = ui.store.get_log("globex").log_id
    reads = [e for e in ui.audit() if e["actor"]["id"] == globex.split("_")[1]]
    assert reads == []  # nothing of globex's reads is in acme's log
    assert ui.store.tree_size(globex_id) > 0


async def test_export_downloads_a_bundle_that_verifies_and_is_recorded(ui: Ui) -> None:
    auditor = await ui.key("auditor")
    async with signed_in(ui, auditor) as browser:
        form = await browser.get("/export", params={"target_type": "invoice", "target_id": "INV-3"})
        assert 'value="INV-3"' in form.text
        answered = await browser.post(
            "/export",
            data={
                "csrf": csrf_of(form.text),
                "target_type": "invoice",
                "target_id": "INV-3",
                "reason": "court order 7",
            },
        )
        assert answered.status_code == 200
        assert 'filename="evidence-invoice-INV-3.json"' in answered.headers["content-disposition"]
        no_reason = await browser.post(
            "/export",
            data={"csrf": csrf_of(form.text), "target_type": "invoice", "target_id": "INV-3"},
        )
        assert no_reason.status_code == 400
    report = verify_bundle(answered.content, parse_vkey(ui.store.get_log("acme").vkey))
    assert report.manifest["query"] == {"target_type": "invoice", "target_id": "INV-3"}
    exported_ids = [entry["event"]["event_id"] for entry in report.events]
    assert exported_ids == [billing_event(n)["event_id"] for n in (3, 53)]
    exported = ui.audit("audit.exported")
    assert len(exported) == 1 and exported[0]["reason"] == "court order 7"
    assert exported[0]["data"]["sha256"] == answered.headers["indelible-bundle-sha256"]
    assert exported[0]["context"]["source"] == "ui"


async def test_integrity_page_shows_checkpoints_chart_and_the_last_verification(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as browser:
        page = await browser.get("/integrity")
        assert "never fully verified" in page.text
        size = ui.store.tree_size(ui.log_id)
        assert re.search(r'<dd id="tree-size">([0-9]+)</dd>', page.text) is not None
        bars = re.findall(r"<title>[^<]* UTC: ([0-9]+) events</title>", page.text)
        assert len(bars) == 24 and sum(int(b) for b in bars) >= 60  # received just now
        ran = await browser.post("/integrity/verify", data={"csrf": csrf_of(page.text)})
        assert "<strong>PASSED</strong>" in ran.text
        again = await browser.get("/integrity")
        assert "never fully verified" not in again.text
        assert re.search(r"by [0-9a-f]{16} \([0-9]+ ms\)", again.text)
        assert size <= ui.store.tree_size(ui.log_id)
    # the API's POST /v1/verify is recorded the same way
    async with ui.api() as api:
        assert (await api.post("/v1/verify")).json()["ok"] is True


async def test_a_tenant_requiring_reasons_gets_a_reason_form(ui: Ui) -> None:
    async with signed_in(ui, ui.admin) as browser:
        page = await browser.get("/admin/settings")
        saved = await browser.post(
            "/admin/settings", data={"csrf": csrf_of(page.text), "require_read_reason": "on"}
        )
        assert saved.status_code == 200 and "Saved" in saved.text
        before = len(ui.audit())
        asked = await browser.get("/search", params={"actor_id": "user-1"})
        assert asked.status_code == 400
        assert 'name="reason"' in asked.text and 'name="actor_id" value="user-1"' in asked.text
        assert len(ui.audit()) == before  # nothing was read
        given = await browser.get("/search", params={"actor_id": "user-1", "reason": "ticket 9"})
        assert given.status_code == 200
        assert ui.audit()[-1]["reason"] == "ticket 9"
        # links on the page carry the reason on
        assert "reason=ticket+9" in given.text or "reason=ticket%209" in given.text


async def test_unknown_pages_are_html_for_browsers_and_json_for_the_api(ui: Ui) -> None:
    async with ui.browser() as browser:
        page = await browser.get("/no-such-page")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        api = await browser.get("/v1/no-such-route")
        assert api.status_code == 404 and api.headers["content-type"] == "application/json"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ui.app), base_url="http://indelible.test"
    ) as plain:
        answered = await plain.get("/no-such-page")
        assert answered.headers["content-type"] == "application/json"
        assert answered.json()["error"]["code"] == "not_found"


async def test_ui_secure_cookie_true_marks_the_cookie_secure_even_over_http(
    tmp_path: Path,
) -> None:
    options = UiOptions(secure_cookie="true", session_minutes=5)
    async with running_ui(tmp_path, ui=options) as ui, ui.browser() as browser:
        # as behind a TLS-terminating proxy: the browser speaks HTTPS, the server sees HTTP
        form = await browser.get("/login")
        nonce = form.headers["set-cookie"]
        assert "secure" in nonce.lower()
        browser.cookies.set("indelible_login", nonce.split(";")[0].split("=", 1)[1])
        answered = await browser.post("/login", data={"key": ui.admin, "csrf": csrf_of(form.text)})
        assert answered.status_code == 303
        cookie = answered.headers["set-cookie"]
        assert cookie.startswith("__Host-indelible_session=")
        assert "secure" in cookie.lower() and "max-age=300" in cookie.lower()


async def test_an_expired_session_is_no_session(tmp_path: Path) -> None:
    clock = {"ms": 1_800_000_000_000}
    async with running_ui(tmp_path, clock_ms=lambda: clock["ms"]) as ui, ui.browser() as browser:
        await login(browser, ui.admin)
        assert (await browser.get("/integrity")).status_code == 200
        clock["ms"] += 480 * 60_000  # ui_session_minutes later
        assert (await browser.get("/integrity")).status_code == 303


async def test_without_the_ui_setting_nothing_is_served_at_the_root(tmp_path: Path) -> None:
    async with running_ui(tmp_path, ui=UiOptions(enabled=False)) as ui, ui.browser() as browser:
        for path in ("/", "/login", "/search"):
            answered = await browser.get(path)
            assert answered.status_code == 404
            assert answered.headers["content-type"] == "application/json"
        async with ui.api() as api:
            assert (await api.get("/v1/events")).status_code == 200
