"""Access through the HTTP surface: the role-by-route matrix, tenant isolation on every route,
failed-authentication limits, key and settings life cycles, and the meta-audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from indelible.core.entry import decode
from indelible.server import create_app
from indelible.service.access import ROLES, Permission, Principal
from indelible.storage.sqlite import SQLiteStore
from tests.factories import billing_event
from tests.server.test_api import Service, assert_error_shape, new_runtime, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def audit_events(store: SQLiteStore, log_id: int, event_type: str) -> list[dict[str, Any]]:
    """The decoded events of one type in a log, in seq order."""
    found = []
    for row in store.iter_entries(log_id):
        event = decode(row.leaf, row.personal).event
        if event["event_type"] == event_type:
            found.append(event)
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Tenants:
    """The operator tenant "acme" (one key per role) and a second tenant "beta"."""

    service: Service
    acme: dict[str, str]  # role -> token
    beta_admin: str
    beta_log: int
    beta_event_id: str
    beta_key_id: str


async def with_tenants(service: Service) -> Tenants:
    acme = {"admin": service.token}
    for role in ROLES[:-1]:
        _, acme[role] = service.runtime.keys.create(service.log_id, role, f"acme {role}", None)
    created = await service.client.post("/v1/tenants", json={"name": "beta", "origin": "b/beta"})
    assert created.status_code == 201, created.text
    beta_admin = created.json()["admin_key"]["token"]
    beta_log = service.store.get_log("beta").log_id
    secret = billing_event(
        900,
        salt=9,
        target={"type": "invoice", "id": "INV-BETA-SECRET"},
        reason="beta secret",
        data={"note": "BETA-ONLY-CONTENT"},
    )
    posted = await service.client.post("/v1/events", json=secret, headers=bearer(beta_admin))
    assert posted.status_code == 201, posted.text
    made = await service.client.post(
        "/v1/keys", json={"name": "beta reader", "role": "reader"}, headers=bearer(beta_admin)
    )
    assert made.status_code == 201
    return Tenants(service, acme, beta_admin, beta_log, secret["event_id"], made.json()["key_id"])


@pytest.fixture
async def tenants(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Tenants]:
    async with running(tmp_path) as service:
        await service.post([billing_event(n) for n in range(5)])
        yield await with_tenants(service)


# Every route of the API, with the permission it needs: written here, independently of the
# routes' own declarations, so a route that checks the wrong permission fails the matrix.
ROUTES: list[tuple[str, str, Permission, dict[str, Any]]] = [
    ("POST", "/v1/events", Permission.INGEST, {"json": billing_event(100)}),
    ("GET", "/v1/events", Permission.READ, {}),
    ("GET", "/v1/events/export", Permission.EXPORT, {"params": {"format": "csv"}}),
    ("GET", "/v1/events/{event_id}", Permission.READ, {}),
    ("GET", "/v1/entities/{entity_type}/{entity_id}/history", Permission.READ, {}),
    ("GET", "/v1/entities/{entity_type}/{entity_id}/state", Permission.READ, {}),
    ("POST", "/v1/verify", Permission.VERIFY, {}),
    ("GET", "/v1/checkpoint", Permission.EVIDENCE, {}),
    ("GET", "/v1/vkey", Permission.EVIDENCE, {}),
    ("GET", "/v1/keys", Permission.MANAGE, {}),
    ("POST", "/v1/keys", Permission.MANAGE, {"json": {"name": "made", "role": "reader"}}),
    ("DELETE", "/v1/keys/{key_id}", Permission.MANAGE, {}),
    ("GET", "/v1/settings", Permission.MANAGE, {}),
    ("PATCH", "/v1/settings", Permission.MANAGE, {"json": {"require_read_reason": False}}),
    ("GET", "/v1/tenants", Permission.TENANTS, {}),
    ("POST", "/v1/tenants", Permission.TENANTS, {"json": {"name": "gamma"}}),
    ("GET", "/v1/proofs/inclusion", Permission.EVIDENCE, {"params": {"seq": 0}}),
    ("GET", "/v1/proofs/consistency", Permission.EVIDENCE, {"params": {"old": 1}}),
    ("GET", "/v1/anchors", Permission.EVIDENCE, {}),
    ("GET", "/v1/leaves/{seq}", Permission.READ, {}),
    (
        "POST",
        "/v1/exports",
        Permission.EXPORT,
        {"json": {"target_type": "invoice", "target_id": "INV-1", "reason": "matrix"}},
    ),
    ("GET", "/tlog/{tenant}/checkpoint", Permission.EVIDENCE, {}),
    ("GET", "/tlog/{tenant}/tile/{path}", Permission.EVIDENCE, {}),  # a hash tile
    ("GET", "/tlog/{tenant}/tile/entries/000.p/3", Permission.READ, {}),  # an entry bundle
    # Public by nature: every role (and no key at all) may read it.
    ("GET", "/.well-known/indelible/{tenant}/vkey", Permission.EVIDENCE, {}),
]


def fill(
    path: str, *, event_id: str, key_id: str, entity: tuple[str, str], tenant: str = "acme"
) -> str:
    return (
        path.replace("{tenant}", tenant)
        .replace("{path}", "0/000.p/3")
        .replace("{seq}", "0")
        .replace("{event_id}", event_id)
        .replace("{key_id}", key_id)
        .replace("{entity_type}", entity[0])
        .replace("{entity_id}", entity[1])
    )


def test_the_matrix_covers_every_route_of_the_app(tmp_path: Path) -> None:

    store, runtime, _ = new_runtime(tmp_path)
    app = create_app(runtime)
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    listed = {(method, path) for method, path, _, _ in ROUTES}
    assert served - listed == {("GET", "/healthz"), ("GET", "/readyz")}
    store.close()


async def test_each_role_reaches_exactly_the_routes_its_grants_allow(tenants: Tenants) -> None:
    client, log_id = tenants.service.client, tenants.service.log_id
    mine = billing_event(0)["event_id"]
    for role, token in tenants.acme.items():
        principal = Principal("x", "x", role, log_id, "acme", operator=True)
        for method, path, permission, options in ROUTES:
            target = tenants.service.runtime.keys.create(log_id, "reader", "victim", None)[0]
            url = fill(path, event_id=mine, key_id=target.key_id, entity=("invoice", "INV-1"))
            if permission is Permission.TENANTS:
                options = {"json": {"name": f"t-{role}"}} if method == "POST" else options
            response = await client.request(method, url, headers=bearer(token), **options)
            if principal.allows(permission):
                assert response.status_code not in (401, 403), (role, method, path, response.text)
            else:
                assert_error_shape(response, 403, "forbidden")


async def test_only_admins_of_the_operator_tenant_manage_tenants(tenants: Tenants) -> None:
    client = tenants.service.client
    listed = await client.get("/v1/tenants", headers=bearer(tenants.beta_admin))
    assert_error_shape(listed, 403, "forbidden")
    made = await client.post("/v1/tenants", json={"name": "x"}, headers=bearer(tenants.beta_admin))
    assert_error_shape(made, 403, "forbidden")
    ok = await client.get("/v1/tenants", headers=bearer(tenants.acme["admin"]))
    assert [t["name"] for t in ok.json()["tenants"]] == ["acme", "beta"]
    store = tenants.service.store
    made_in_acme = audit_events(store, tenants.service.log_id, "audit.tenant_created")
    made_in_beta = audit_events(store, tenants.beta_log, "audit.tenant_created")
    assert [e["target"] for e in made_in_acme] == [{"type": "tenant", "id": "beta"}]
    assert made_in_beta == [
        {
            **made_in_acme[0],
            "event_id": made_in_beta[0]["event_id"],
            "occurred_at": made_in_beta[0]["occurred_at"],
        }
    ]
    first_key = audit_events(store, tenants.beta_log, "audit.key_created")[0]
    assert first_key["data"] == {"name": "beta admin", "role": "admin"}


async def test_a_denied_request_is_recorded_in_the_keys_own_log(tenants: Tenants) -> None:
    service = tenants.service
    response = await service.client.get("/v1/events", headers=bearer(tenants.acme["writer"]))
    assert_error_shape(response, 403, "forbidden")
    denied = audit_events(service.store, service.log_id, "audit.access_denied")
    assert [(e["actor"]["name"], e["data"]["route"]) for e in denied] == [
        ("acme writer", "/v1/events")
    ]


async def test_no_route_shows_one_tenant_anything_of_another(tenants: Tenants) -> None:
    service, client = tenants.service, tenants.service.client
    beta_vkey = service.store.get_log("beta").vkey
    # What only beta's event holds. (Ids acme asks for are echoed back to acme, and recorded
    # in acme's own audit.read events; beta's vkey is in acme's record of beta's creation.)
    secrets = ("beta secret", "BETA-ONLY-CONTENT", "req-900")
    for role in ("admin", "auditor"):
        token = tenants.acme[role]
        for method, path, permission, options in ROUTES:
            if permission is Permission.TENANTS:
                continue  # the operator lists tenants by design; nothing of their events
            url = fill(
                path,
                event_id=tenants.beta_event_id,
                key_id=tenants.beta_key_id,
                entity=("invoice", "INV-BETA-SECRET"),
                tenant="beta",
            )
            response = await client.request(method, url, headers=bearer(token), **options)
            for secret in secrets:
                assert secret not in response.text, (role, method, path)
            allowed = service.runtime.keys.authenticate(token).allows(permission)
            if allowed and ("{event_id}" in path or "{key_id}" in path):
                assert_error_shape(response, 404, "not_found")
            if allowed and path.startswith("/tlog/{tenant}/"):
                assert_error_shape(response, 403, "forbidden")
    # Filters naming beta's data find nothing, and acme's export holds none of it.
    found = await client.get(
        "/v1/events", params={"target_id": "INV-BETA-SECRET"}, headers=bearer(tenants.acme["admin"])
    )
    assert found.json()["items"] == []
    state = await client.get(
        "/v1/entities/invoice/INV-BETA-SECRET/state", headers=bearer(tenants.acme["admin"])
    )
    assert state.json()["seqs"] == [] and state.json()["exists"] is None
    # The beta key still works and was not revoked by acme's DELETE of its id.
    keys = await client.get("/v1/keys", headers=bearer(tenants.beta_admin))
    beta_reader = [k for k in keys.json()["keys"] if k["key_id"] == tenants.beta_key_id]
    assert beta_reader[0]["revoked_at_ms"] is None
    # And the other way round: beta sees only its own.
    page = await client.get("/v1/events", headers=bearer(tenants.beta_admin))
    assert {
        item["event"]["target"]["id"]
        for item in page.json()["items"]
        if "target" in item["event"] and item["event"]["event_type"] == "invoice.updated"
    } == {"INV-BETA-SECRET"}
    acme_vkey = service.store.get_log("acme").vkey
    for token, vkey in ((tenants.beta_admin, beta_vkey), (tenants.acme["auditor"], acme_vkey)):
        assert (await client.get("/v1/vkey", headers=bearer(token))).text.strip() == vkey
    assert acme_vkey != beta_vkey


# ---- authentication


async def test_missing_malformed_unknown_and_revoked_keys_are_401(tenants: Tenants) -> None:
    client = tenants.service.client
    revoked = (await client.post("/v1/keys", json={"name": "gone", "role": "reader"})).json()
    assert (await client.delete(f"/v1/keys/{revoked['key_id']}")).status_code == 200
    cases = {
        "none": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": bearer("not-a-key"),
        "unknown": bearer("idl_0123456789abcdef_" + "A" * 43),
        "wrong secret": bearer(tenants.acme["reader"][:-4] + "AAAA"),
        "revoked": bearer(revoked["token"]),
    }
    for name, headers in cases.items():
        bare = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
        async with bare:
            response = await bare.get("/v1/events", headers=headers)
        assert_error_shape(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer"), name


async def test_failed_authentication_is_limited_per_address_and_audited(tmp_path: Path) -> None:
    clock = [1_000.0]
    async with running(tmp_path, auth_fail_limit=3, monotonic=lambda: clock[0]) as service:
        bad = bearer("idl_0123456789abcdef_" + "B" * 43)
        for _ in range(3):
            assert (await service.client.get("/v1/events", headers=bad)).status_code == 401
        blocked = await service.client.get("/v1/events")  # even the right key, from there
        assert_error_shape(blocked, 429, "rate_limited")
        assert int(blocked.headers["retry-after"]) >= 1
        failed = audit_events(service.store, service.log_id, "audit.auth_failed")
        assert len(failed) == 3 and failed[0]["outcome"] == "failure"
        assert failed[0]["context"]["ip"] == "127.0.0.1"
        assert len(audit_events(service.store, service.log_id, "audit.auth_rate_limited")) == 1
        clock[0] += 61  # the window passes
        assert (await service.client.get("/v1/events")).status_code == 200


# ---- keys and settings


async def test_a_key_is_shown_once_works_for_its_role_and_stops_when_revoked(
    tenants: Tenants,
) -> None:
    service, client = tenants.service, tenants.service.client
    made = await client.post("/v1/keys", json={"name": "billing app", "role": "writer"})
    assert made.status_code == 201
    key = made.json()
    token, key_id = key.pop("token"), key["key_id"]
    assert token.startswith(f"idl_{key_id}_")
    listed = await client.get("/v1/keys")
    assert token not in listed.text and "secret" not in listed.text
    assert key in listed.json()["keys"]
    posted = await client.post("/v1/events", json=billing_event(200), headers=bearer(token))
    assert posted.status_code == 201
    assert (await client.delete(f"/v1/keys/{key_id}")).json()["revoked_at_ms"] is not None
    again = await client.delete(f"/v1/keys/{key_id}")
    assert again.status_code == 200  # idempotent, and recorded once
    refused = await client.post("/v1/events", json=billing_event(201), headers=bearer(token))
    assert_error_shape(refused, 401, "unauthenticated")
    created = audit_events(service.store, service.log_id, "audit.key_created")
    revoked = audit_events(service.store, service.log_id, "audit.key_revoked")
    admin_id = service.token.split("_")[1]
    assert [e["target"]["id"] for e in revoked] == [key_id]
    assert created[-1]["target"]["id"] == key_id and created[-1]["actor"]["id"] == admin_id
    assert created[-1]["data"] == {"name": "billing app", "role": "writer"}


async def test_the_last_admin_key_of_a_tenant_cannot_be_revoked(
    service_with_key: Service,
) -> None:
    client, admin_id = service_with_key.client, service_with_key.token.split("_")[1]
    refused = await client.delete(f"/v1/keys/{admin_id}")
    assert_error_shape(refused, 409, "last_admin_key")
    other = (await client.post("/v1/keys", json={"name": "second", "role": "admin"})).json()
    assert (await client.delete(f"/v1/keys/{other['key_id']}")).status_code == 200
    second = (await client.post("/v1/keys", json={"name": "third", "role": "admin"})).json()
    assert (await client.delete(f"/v1/keys/{admin_id}")).status_code == 200  # not the last
    assert_error_shape(await client.get("/v1/keys"), 401, "unauthenticated")
    keys = await client.get("/v1/keys", headers=bearer(second["token"]))
    assert [k["key_id"] for k in keys.json()["keys"] if k["revoked_at_ms"] is None] == [
        second["key_id"]
    ]


async def test_a_client_address_that_is_not_an_ip_is_left_out_of_the_event(
    tmp_path: Path,
) -> None:
    store, runtime, token = new_runtime(tmp_path)
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, client=("unix-socket-peer", 0))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            response = await client.get("/v1/events", headers=bearer(token))
            assert response.status_code == 200, response.text
        read = audit_events(store, store.get_log("acme").log_id, "audit.read")[0]
        assert "ip" not in read["context"] and read["context"]["source"] == "api"
    finally:
        store.close()


async def test_bad_key_requests_are_refused(service_with_key: Service) -> None:
    client = service_with_key.client
    for body in ({"name": "x", "role": "root"}, {"name": "", "role": "reader"}, {"role": "x"}):
        assert_error_shape(await client.post("/v1/keys", json=body), 422)
    extra = await client.post("/v1/keys", json={"name": "x", "role": "reader", "secret": "s"})
    assert_error_shape(extra, 422)
    assert_error_shape(await client.delete("/v1/keys/0123456789abcdef"), 404, "not_found")
    assert_error_shape(await client.delete("/v1/keys/not-hex"), 422)


@pytest.fixture
async def service_with_key(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Service]:
    async with running(tmp_path) as service:
        yield service


async def test_a_tenant_can_require_a_reason_for_every_read(service_with_key: Service) -> None:
    service, client = service_with_key, service_with_key.client
    await service.post(billing_event(0))
    changed = await client.patch("/v1/settings", json={"require_read_reason": True})
    assert changed.json() == {"require_read_reason": True}
    for path in ("/v1/events", "/v1/entities/invoice/INV-0/history", "/v1/events/export"):
        assert_error_shape(await client.get(path), 400, "reason_required")
    text = "ticket FIN-42: Prüfung der Rechnung"
    reason = {"X-Audit-Reason": text.encode()}  # UTF-8 bytes on the wire
    assert (await client.get("/v1/events", headers=reason)).status_code == 200
    reads = audit_events(service.store, service.log_id, "audit.read")
    assert [r["reason"] for r in reads] == [text]
    not_utf8 = {"X-Audit-Reason": "Prüfung".encode("latin-1")}  # not UTF-8
    assert_error_shape(await client.get("/v1/events", headers=not_utf8), 400)
    settings = audit_events(service.store, service.log_id, "audit.settings_changed")
    assert settings[0]["changes"] == [
        {"field": "require_read_reason", "before": False, "after": True}
    ]
    assert_error_shape(await client.patch("/v1/settings", json={"unknown": 1}), 422)
    long = {"X-Audit-Reason": "x" * 1025}
    assert_error_shape(await client.get("/v1/events", headers=long), 400)


# ---- meta-audit of reads


async def test_every_read_appends_one_audit_read_naming_who_what_and_how_many(
    service_with_key: Service,
) -> None:
    service, client = service_with_key, service_with_key.client
    await service.post([billing_event(n) for n in range(3)])
    event_id = billing_event(1)["event_id"]
    reads = [
        ("/v1/events", {"actor_id": "user-1"}, "events", 1),
        ("/v1/events/export", {"format": "ndjson", "event_type": "invoice.*"}, "export", 3),
        (f"/v1/events/{event_id}", {}, "event", 1),
        ("/v1/entities/invoice/INV-2/history", {}, "history", 1),
        ("/v1/entities/invoice/INV-2/state", {}, "state", 1),
    ]
    for path, params, route, results in reads:
        before = service.size
        response = await client.get(path, params=params, headers={"X-Audit-Reason": route})
        assert response.status_code == 200, response.text
        assert service.size == before + 1
        record = audit_events(service.store, service.log_id, "audit.read")[-1]
        assert record["data"]["route"] == route and record["data"]["results"] == results
        assert record["actor"]["id"] == service.token.split("_")[1]
        assert record["reason"] == route
    missing = await client.get("/v1/events/01890000-0000-7000-8000-000000000000")
    assert_error_shape(missing, 404, "not_found")
    assert audit_events(service.store, service.log_id, "audit.read")[-1]["outcome"] == "failure"


async def test_a_read_whose_audit_event_cannot_be_written_fails_and_shows_nothing(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, write_timeout=0.3) as service:
        await service.post(billing_event(0))
        service.store._write_lock.acquire()  # the writer is stuck: nothing can commit
        try:
            response = await service.client.get("/v1/events")
        finally:
            service.store._write_lock.release()
        assert_error_shape(response, 503, "store_error")
        assert "INV-0" not in response.text
        await asyncio.sleep(0.1)


async def test_clients_cannot_write_in_the_audit_namespace(service_with_key: Service) -> None:
    forged = billing_event(0, event_type="audit.read")
    response = await service_with_key.post([billing_event(1), forged])
    assert_error_shape(response, 422, "invalid_event")
    assert response.json()["error"]["details"]["errors"] == [
        {
            "field": "/event_type",
            "rule": "reserved",
            "message": "event types starting 'audit.' are written by Indelible itself",
            "index": 1,
        }
    ]
    assert service_with_key.size == 0


async def test_clients_cannot_write_alerts(service_with_key: Service) -> None:
    forged = billing_event(0, event_type="alert.fired")
    response = await service_with_key.post([forged])
    assert_error_shape(response, 422, "invalid_event")
    assert response.json()["error"]["details"]["errors"][0]["message"] == (
        "event types starting 'alert.' are written by Indelible itself"
    )
    assert service_with_key.size == 0


async def test_the_first_start_creates_one_admin_key_and_records_it(tmp_path: Path) -> None:
    store, runtime, _ = new_runtime(tmp_path, with_key=False)
    runtime.start()
    try:
        token = runtime.bootstrap_admin()
        assert token is not None and runtime.bootstrap_admin() is None
        principal = runtime.keys.authenticate(token)
        assert principal.role == "admin" and principal.operator
        created = audit_events(store, principal.log_id, "audit.key_created")
        assert created[0]["actor"]["type"] == "system"
    finally:
        runtime.close()
        store.close()
