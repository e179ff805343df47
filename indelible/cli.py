"""The ``indelible`` command line.

Every command takes ``--json``: its output is then one JSON document on stdout (a documented
contract, see docs/cli.md); errors use the same ``{"error": {...}}`` shape as the HTTP API.
Exit codes: 0 success, 1 verification failed, 2 bad input or usage, 3 operational error.
"""

from __future__ import annotations

import gc
import getpass
import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from indelible.config import Settings, load_settings
from indelible.core.bundle import verify_bundle
from indelible.core.cosignature import parse_cosigner_vkey
from indelible.core.event import DEFAULT_LIMITS, parse_batch, validate_batch
from indelible.core.note import parse_vkey
from indelible.core.timestamps import format_timestamp
from indelible.errors import ConfigError, IndelibleError, InputError, NotFound, VerificationError
from indelible.server.reads import parse_time
from indelible.server.runtime import anchor_config
from indelible.service.anchoring import final_checkpoint
from indelible.service.audit import AuditWriter, RequestInfo
from indelible.service.export import ExportRequest, ExportResult, export_bundle
from indelible.service.ingest import Publisher, Receipt, Sequencer
from indelible.service.logs import OpenLog, default_origin, init_log, open_log
from indelible.service.proofs import consistency_proof, inclusion_proof
from indelible.service.remote import RemoteLog, check_remote, post_export
from indelible.service.verification import verify_and_record
from indelible.storage import display_url, open_store

__all__ = ["app", "main"]

app = typer.Typer(
    name="indelible",
    help="Indelible: a tamper-evident audit trail you run yourself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
proof_app = typer.Typer(help="Inclusion and consistency proofs.", no_args_is_help=True)
app.add_typer(proof_app, name="proof")
witness_cli = typer.Typer(
    help="A C2SP witness that cosigns other logs' checkpoints.", no_args_is_help=True
)
app.add_typer(witness_cli, name="witness")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Data directory (default ./data).", show_default=False)
]
LogOpt = Annotated[str | None, typer.Option("--log", help="Log (tenant) name.", show_default=False)]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: SQLite in --data).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]

_APPEND_CHUNK = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _settings(data: Path | None, log: str | None, store: str | None = None) -> Settings:
    return load_settings({"data": str(data) if data else None, "log": log, "store": store})


def _emit(as_json: bool, document: Any, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.print(text, markup=False)


@contextmanager
def _opened(settings: Settings, *, need_signer: bool = False) -> Iterator[OpenLog]:
    store = open_store(settings.store_url, create=False)
    try:
        yield open_log(store, settings.keys_dir, settings.log, need_signer=need_signer)
    finally:
        store.close()


def _progress(enabled: bool) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    )


@app.command()
def init(
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    origin: Annotated[
        str | None, typer.Option(help="Checkpoint origin (default <host>/indelible/<log>).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the store and the log's Ed25519 signing key (mode 0600)."""
    settings = _settings(data, log, store)
    opened_store = open_store(
        settings.store_url, create=True, service_role=settings.pg_service_role or None
    )
    try:
        opened = init_log(
            opened_store,
            settings.keys_dir,
            settings.log,
            origin or default_origin(socket.gethostname(), settings.log),
            clock_ms=now_ms,
            random_bytes=os.urandom,
        )
    finally:
        opened_store.close()
    info = opened.info
    _emit(
        as_json,
        {
            "log": info.name,
            "origin": info.origin,
            "vkey": info.vkey,
            "store": display_url(settings.store_url),
        },
        f"created log {info.name!r} in {display_url(settings.store_url)}\norigin: {info.origin}\n"
        f"verification key (publish it): {info.vkey}",
    )


@app.command()
def append(
    file: Annotated[
        str, typer.Argument(help="A JSON object, a JSON array or NDJSON; - for stdin.")
    ],
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append events; print receipts once they are durable, then sign a checkpoint."""
    settings = _settings(data, log, store)
    raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    items = parse_batch(raw, max_bytes=1 << 30, max_items=10_000_000)
    events = validate_batch(items, now_ms=now_ms(), limits=DEFAULT_LIMITS)
    receipts: list[Receipt] = []
    with _opened(settings, need_signer=True) as opened:
        assert opened.signer is not None
        sequencer = Sequencer(
            opened.store,
            opened.info,
            clock_ms=now_ms,
            random_bytes=os.urandom,
            max_batch=settings.max_batch,
        )
        try:
            with _progress(len(events) > 10 * _APPEND_CHUNK and not as_json) as bar:
                task = bar.add_task("appending", total=len(events))
                for at in range(0, len(events), _APPEND_CHUNK):
                    receipts += sequencer.append(events[at : at + _APPEND_CHUNK])
                    bar.advance(task, min(_APPEND_CHUNK, len(events) - at))
        finally:
            sequencer.close()
        checkpoint = Publisher(opened.store, opened.info, opened.signer, clock_ms=now_ms).publish()
    lines = [f"{r.seq}\t{r.event_id}\t{r.leaf_hash.hex()}" for r in receipts]
    if checkpoint is not None:
        lines.append(f"signed checkpoint at size {checkpoint.size}")
    _emit(
        as_json,
        {
            "receipts": [r.to_dict() for r in receipts],
            "checkpoint": None if checkpoint is None else checkpoint.note,
        },
        "\n".join(lines),
    )


@app.command()
def checkpoint(
    data: DataOpt = None, log: LogOpt = None, store: StoreOpt = None, as_json: JsonOpt = False
) -> None:
    """Sign a checkpoint if the tree grew, and print the latest one (a C2SP signed note)."""
    settings = _settings(data, log, store)
    with _opened(settings) as opened:
        if opened.signer is not None:
            Publisher(opened.store, opened.info, opened.signer, clock_ms=now_ms).publish()
        latest = opened.store.latest_checkpoint(opened.info.log_id)
    if latest is None:
        raise InputError("the log is empty: no checkpoint yet")
    _emit(
        as_json, {"size": latest.size, "root": latest.root.hex(), "note": latest.note}, latest.note
    )


@app.command()
def verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="A checkpoint held outside (signed note file); repeatable."),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option(help="Verification key to trust (default: the one in the store)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Processes for large logs.")] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            help="A running service to check instead: does its log extend each --checkpoint?"
        ),
    ] = None,
    token: TokenOpt = None,
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute everything from stored bytes; exit 1 naming the first bad seq. With
    --remote, prove instead that a running service's log extends the checkpoints you hold."""
    held = [path.read_text(encoding="utf-8") for path in checkpoint or []]
    if remote is not None:
        _verify_remote(RemoteLog(remote, token), held, vkey, as_json)
        return
    settings = _settings(data, log, store)
    with _opened(settings) as opened:
        verifier = parse_vkey(vkey) if vkey else opened.verifier
        size = opened.store.tree_size(opened.info.log_id)
        with _progress(size > 100_000 and not as_json) as bar:
            task = bar.add_task("verifying", total=size)
            document = verify_and_record(
                opened.store,
                opened.info,
                verifier,
                by="command line",
                clock_ms=now_ms,
                held=held,
                workers=workers or settings.verify_workers,
                progress=lambda done, total: bar.update(task, completed=done),
                raise_failure=True,
            )
    unpublished, held_sizes = document["unpublished"], document["held_checkpoint_sizes"]
    text = (
        f"ok: {document['size']} entries, {document['checkpoints_checked']} checkpoints verified"
        + (f"; {unpublished} entries not yet covered by a checkpoint" if unpublished else "")
        + (f"; held checkpoints {held_sizes} consistent" if held else "")
    )
    if vkey is None:
        text += "\nnote: trusted the verification key stored in the log; pass --vkey to pin yours"
    _emit(as_json, document, text)


def _verify_remote(remote: RemoteLog, held: list[str], vkey: str | None, as_json: bool) -> None:
    if not held:
        raise InputError("--remote needs at least one --checkpoint you hold")
    verifier = parse_vkey(vkey) if vkey else remote.vkey()
    checks = [check_remote(remote, note, verifier) for note in held]
    latest = checks[-1]
    text = "\n".join(
        f"ok: the log at {remote.url} (size {c.latest.size}) extends your checkpoint of "
        f"size {c.held.size}"
        for c in checks
    )
    if vkey is None:
        text += "\nnote: trusted the verification key the service sent; pass --vkey to pin yours"
    document = {"ok": True, **latest.to_dict(), "held_sizes": [c.held.size for c in checks]}
    _emit(as_json, document, text)


def _emit_proof(as_json: bool, document: dict[str, Any]) -> None:
    fields = "\n".join(f"{key}: {value}" for key, value in document.items() if key != "proof")
    nodes = "\n".join(f"  {node}" for node in document["proof"])
    _emit(as_json, document, f"{fields}\nproof:\n{nodes}")


@proof_app.command("inclusion")
def proof_inclusion(
    seq: int,
    tree_size: Annotated[
        int | None, typer.Option(help="Tree size (default: latest checkpoint).")
    ] = None,
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the RFC 9162 inclusion proof of entry SEQ."""
    with _opened(_settings(data, log, store)) as opened:
        proof = inclusion_proof(opened.store, opened.info, seq, tree_size)
    _emit_proof(as_json, proof.to_dict())


@proof_app.command("consistency")
def proof_consistency(
    old: int,
    new: int,
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the RFC 9162 consistency proof from tree size OLD to NEW."""
    with _opened(_settings(data, log, store)) as opened:
        proof = consistency_proof(opened.store, opened.info, old, new)
    _emit_proof(as_json, proof.to_dict())


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="INDELIBLE_TOKEN",
        help="API key for --url (or INDELIBLE_TOKEN).",
        show_default=False,
    ),
]


def _local_exporter() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {"id": f"os:{user}", "type": "user", "name": f"{user} (indelible export)"}


def _export_local(settings: Settings, wanted: ExportRequest) -> tuple[ExportResult, Receipt]:
    """Export from the store itself: sign what is integrated, build, record the export."""
    anchors = anchor_config(settings)
    with _opened(settings, need_signer=True) as opened:
        assert opened.signer is not None
        sequencer = Sequencer(
            opened.store, opened.info, clock_ms=now_ms, random_bytes=os.urandom
        )  # takes the write lease: StoreLocked while a server runs (use --url then)
        try:
            publisher = Publisher(opened.store, opened.info, opened.signer, clock_ms=now_ms)
            publisher.publish()
            final = final_checkpoint(opened.store, opened.info.log_id, anchors)
            result = export_bundle(
                opened.store,
                opened.info,
                opened.signer,
                final,
                wanted,
                anchors=anchors,
                clock_ms=now_ms,
                max_events=settings.max_export_events,
            )
            event = AuditWriter(None, clock_ms=now_ms, random_bytes=os.urandom).build(
                "audit.exported",
                actor=wanted.exporter,
                action="export",
                request=RequestInfo(reason=wanted.reason),
                target={"type": wanted.target_type, "id": wanted.target_id},
                data={"query": wanted.query(), "reason": wanted.reason, **result.summary()},
            )
            receipt = sequencer.append([event])[0]
            publisher.publish()
        finally:
            sequencer.close()
    return result, receipt


@app.command()
def export(
    target_type: Annotated[str, typer.Option(help="Type of the record (e.g. invoice).")],
    target_id: Annotated[str, typer.Option(help="Id of the record (e.g. INV-1).")],
    reason: Annotated[str, typer.Option(help="Why the evidence is exported (recorded).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the bundle.")],
    since: Annotated[str | None, typer.Option(help="From this RFC 3339 UTC time.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this RFC 3339 UTC time.")] = None,
    url: Annotated[
        str | None, typer.Option(help="A running service to export from (POST /v1/exports).")
    ] = None,
    token: TokenOpt = None,
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an evidence bundle for one record: its events, their inclusion proofs against
    one final checkpoint, its cosignatures and timestamps, and a manifest signed by the log.
    The export is itself recorded as an audit.exported event."""
    if not reason.strip():
        raise InputError("--reason must say why the evidence is exported")
    since_ms, until_ms = parse_time("--since", since), parse_time("--until", until)
    if url is not None:
        body = {"target_type": target_type, "target_id": target_id, "reason": reason}
        body.update({k: v for k, v in (("since", since), ("until", until)) if v is not None})
        bundle, summary = post_export(RemoteLog(url, token), body)
    else:
        wanted = ExportRequest(
            target_type, target_id, reason, _local_exporter(), since_ms, until_ms
        )
        result, receipt = _export_local(_settings(data, log, store), wanted)
        bundle, summary = result.bundle, {**result.summary(), "audit_seq": receipt.seq}
    _write_new(out_file, bundle)
    _emit(
        as_json,
        {"out": str(out_file), **summary},
        f"wrote {out_file}: {summary['entries']} events against the checkpoint of size "
        f"{summary['tree_size']}, sha256 {summary['sha256']}"
        + (
            f"\nnote: {summary['not_yet_covered']} newer events are not yet covered by a "
            "final checkpoint; export again once they are"
            if summary.get("not_yet_covered")
            else ""
        ),
    )


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: a temporary file, fsync, then rename."""
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@app.command("verify-bundle")
def verify_bundle_command(
    file: Annotated[Path, typer.Argument(help="The evidence bundle.")],
    vkey: Annotated[str, typer.Option(help="The log's verification key (C2SP vkey).")],
    tsa_ca: Annotated[
        list[Path] | None,
        typer.Option(help="PEM of roots the timestamp tokens must chain to; repeatable."),
    ] = None,
    witness: Annotated[
        list[str] | None, typer.Option(help="A witness's cosigner vkey to check; repeatable.")
    ] = None,
    quorum: Annotated[
        int, typer.Option(help="How many of the --witness keys must have cosigned.")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Verify an evidence bundle offline with the log's key; exit 1 naming what failed."""
    from indelible.service.timestamping import load_roots, verify_timestamp

    roots = [root for path in tsa_ca or [] for root in load_roots(path.read_bytes())]
    witnesses = [parse_cosigner_vkey(text) for text in witness or []]
    check = None
    if roots:

        def check(token: bytes, message: bytes) -> dict[str, Any]:
            info = verify_timestamp(token, message, roots)
            return {"gen_time": format_timestamp(info.gen_time_ms), "tsa": info.tsa}

    report = verify_bundle(
        file.read_bytes(),
        parse_vkey(vkey),
        check_timestamp=check,
        witnesses=witnesses,
        quorum=quorum,
    )
    lines = [
        f"ok: {len(report.events)} events of {report.origin}, each proved in the tree of "
        f"size {report.tree_size}",
        f"exported by {report.manifest.get('exported_by')} at "
        f"{report.manifest.get('exported_at')}: {report.manifest.get('reason')}",
    ]
    for stamp in report.timestamps:
        if stamp["checked"]:
            lines.append(f"timestamp: {stamp['gen_time']} by {stamp['tsa']}")
        else:
            lines.append(f"timestamp by {stamp['authority']}: NOT checked (give --tsa-ca)")
    lines += [f"cosigned by {name}" for name in report.cosigners]
    _emit(as_json, {"ok": True, **report.to_dict()}, "\n".join(lines))


@app.command()
def anchors(
    size: Annotated[int | None, typer.Option(help="Only the checkpoint of this size.")] = None,
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the timestamp tokens and witness cosignatures held for the log's checkpoints."""
    with _opened(_settings(data, log, store)) as opened:
        rows = opened.store.list_anchors(opened.info.log_id, size=size)
    listed = [
        {
            "size": row.size,
            "kind": row.kind,
            "authority": row.authority,
            "created_at": format_timestamp(row.created_at_ms),
            "sha256": hashlib.sha256(row.evidence).hexdigest(),
        }
        for row in rows
    ]
    text = "\n".join(
        f"{a['size']:>10}  {a['kind']:<11}  {a['created_at']}  {a['authority']}" for a in listed
    )
    _emit(as_json, {"anchors": listed}, text or "no anchors yet")


HostOpt = Annotated[
    str | None,
    typer.Option("--host", help="Address to listen on (default 127.0.0.1).", show_default=False),
]
PortOpt = Annotated[
    int | None, typer.Option("--port", help="TCP port (default 8700).", show_default=False)
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (or INDELIBLE_CONFIG).", show_default=False),
]


def _server_settings(
    data: Path | None,
    log: str | None,
    store: str | None,
    host: str | None,
    port: int | None,
    config: Path | None,
) -> Settings:
    return load_settings(
        {
            "data": str(data) if data else None,
            "log": log,
            "store": store,
            "host": host,
            "port": None if port is None else str(port),
        },
        config_file=config,
    )


def _ensure_log(settings: Settings) -> bool:
    """Create the store and the log on first start (no store, or a store with no log)."""
    try:
        store = open_store(settings.store_url, create=False)
    except NotFound:
        store = open_store(settings.store_url, create=True)
    try:
        if store.list_logs():
            return False
        init_log(
            store,
            settings.keys_dir,
            settings.log,
            default_origin(socket.gethostname(), settings.log),
            clock_ms=now_ms,
            random_bytes=os.urandom,
        )
        return True
    finally:
        store.close()


def _alert_engine(settings: Settings, hub: Any) -> Any:
    """The alert engine for ``settings.alert_rules`` (the alerts extra, imported on demand)."""
    from indelible.service.alerts.engine import AlertEngine
    from indelible.sinks import build_sink

    return AlertEngine(
        hub,
        settings.alert_rules,
        lambda spec: build_sink(spec, os.environ),
        clock_ms=now_ms,
        random_bytes=os.urandom,
        checkpoint_stall=settings.alert_checkpoint_stall,
    )


def _serve(settings: Settings) -> None:
    from indelible.server.runtime import Runtime  # the server extra is imported on demand
    from indelible.server.serve import serve, url_for

    runtime = Runtime.open(settings)
    try:
        if settings.alert_rules:
            runtime.alerts = _alert_engine(settings, runtime.hub)
            rules = runtime.alerts.rules
            out.print(
                f"alerting: {len(rules.rules)} rules and {len(rules.sinks)} sinks from "
                f"{settings.alert_rules}",
                markup=False,
            )
        runtime.start()  # takes the write leases now, so a second server fails here, clearly
        token = runtime.bootstrap_admin()
        for tenant in runtime.hub.logs():
            info = tenant.info
            out.print(
                f"log {info.name!r} in {display_url(settings.store_url)}, origin {info.origin}",
                markup=False,
            )
            out.print(f"verification key (publish it): {info.vkey}", markup=False)
        if token is not None:
            out.print(f"admin API key (shown once): {token}", markup=False)
        out.print(f"serving on {url_for(settings.host, settings.port)}", markup=False)
        sys.stdout.flush()
        serve(runtime, settings.host, settings.port, settings.forwarded_allow_ips)
    finally:
        runtime.close()


@app.command()
def serve(
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP API for every tenant's log (one worker) until SIGTERM or Ctrl-C.

    When the store has no API key yet, an admin key of the operator tenant is created and
    printed once."""
    _serve(_server_settings(data, log, store, host, port, config))


@app.command()
def run(
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start Indelible: on first start create the store, the operator log, its signing key
    and an admin API key (printed once), then serve HTTP."""
    settings = _server_settings(data, log, store, host, port, config)
    if _ensure_log(settings):
        out.print(
            f"created log {settings.log!r} in {display_url(settings.store_url)}", markup=False
        )
    _serve(settings)


# ---- indelible rules / alerts: alert rules files, and the engine's state in the store

rules_cli = typer.Typer(help="Alert rules files: validate and try them.", no_args_is_help=True)
app.add_typer(rules_cli, name="rules")
alerts_cli = typer.Typer(help="The alert engine's progress and deliveries.", no_args_is_help=True)
app.add_typer(alerts_cli, name="alerts")
RulesFileArg = Annotated[Path, typer.Argument(help="A YAML rules file (docs/alerts.md).")]


def _load_rules(file: Path, *, with_sinks: bool) -> Any:
    from indelible.service.alerts.delivery import Retry
    from indelible.service.alerts.rulefile import load_rules
    from indelible.sinks import build_sink

    rules = load_rules(file)
    if with_sinks:
        for spec in rules.sinks:
            Retry.of(spec)
            build_sink(spec, os.environ).close()
    return rules


@rules_cli.command("validate")
def rules_validate(
    file: RulesFileArg,
    no_env: Annotated[
        bool, typer.Option("--no-env", help="Do not check the sinks' secrets are set.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a rules file (and the packs it uses); exit 2 naming every problem."""
    rules = _load_rules(file, with_sinks=not no_env)
    document = {
        "ok": True,
        "rules": [
            {
                "id": rule.id,
                "kind": rule.kind,
                "severity": rule.severity,
                "event_types": list(rule.event_types) if rule.event_types else None,
                "sinks": list(rule.sinks),
            }
            for rule in rules.rules
        ],
        "sinks": [{"name": spec.name, "type": spec.type} for spec in rules.sinks],
        "schedules": [schedule.name for schedule in rules.schedules],
    }
    lines = [f"{file}: {len(rules.rules)} rules, {len(rules.sinks)} sinks: valid"]
    lines += [f"  {rule.id} ({rule.kind}, {rule.severity})" for rule in rules.rules]
    _emit(as_json, document, "\n".join(lines))


@rules_cli.command("test")
def rules_test(
    file: RulesFileArg,
    against: Annotated[
        Path, typer.Option("--against", help="NDJSON of events, or of exported entries.")
    ],
    at: Annotated[
        str | None,
        typer.Option("--now", help="When to check absence rules (default: the last event)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show which events of a file would fire which rule (nothing is written or sent)."""
    from indelible.service.alerts.trial import try_rules

    rules = _load_rules(file, with_sinks=False)
    now = parse_time("--now", at)
    report = try_rules(rules, against.read_bytes(), now_ms=now).to_dict()
    lines = [
        f"line {item['line']} ({item['event_type']} {item['event_id']}) fires {item['rule']}"
        + (f" for {item['group']}" if item["group"] else "")
        if item["line"] is not None
        else f"absence: {item['rule']} fires for {item['group']}"
        for item in report["fired"]
    ]
    lines.append(
        f"{report['events']} events, {report['alerts']} alerts"
        f" ({report['suppressed']} suppressed by de-duplication or rate limits)"
    )
    _emit(as_json, report, "\n".join(lines))


@alerts_cli.command("status")
def alerts_status(
    data: DataOpt = None,
    log: LogOpt = None,
    store: StoreOpt = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="List deliveries in this status: pending, delivered, dead."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most deliveries to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The follower's cursor and lag, deliveries per status, and the latest deliveries (works
    while a server runs)."""
    settings = _settings(data, log, store)
    if status not in (None, "pending", "delivered", "dead"):
        raise InputError("--status is one of pending, delivered, dead")
    with _opened(settings) as opened:
        log_id = opened.info.log_id
        state = opened.store.load_alert_state(log_id)
        size = opened.store.tree_size(log_id)
        counts = opened.store.count_deliveries(log_id)
        rows = opened.store.list_deliveries(log_id, status=status, limit=limit)
    cursor = int(state.get("cursor", "0"))
    document: dict[str, Any] = {
        "log": settings.log,
        "cursor": cursor,
        "size": size,
        "lag": size - cursor,
        "deliveries": {name: counts.get(name, 0) for name in ("pending", "delivered", "dead")},
        "rows": [
            {
                "alert_id": row.alert_id,
                "sink": row.sink,
                "seq": row.seq,
                "status": row.status,
                "attempts": row.attempts,
                "next_attempt": format_timestamp(row.next_attempt_ms),
                "last_error": row.last_error,
            }
            for row in rows
        ],
    }
    lines = [
        f"log {settings.log}: evaluated {cursor} of {size} entries (lag {size - cursor})",
        "deliveries: " + ", ".join(f"{k} {v}" for k, v in document["deliveries"].items()),
    ]
    lines += [
        f"  seq {r['seq']} {r['alert_id']} → {r['sink']}: {r['status']} after {r['attempts']}"
        + (f" ({r['last_error']})" if r["last_error"] else "")
        for r in document["rows"]
    ]
    _emit(as_json, document, "\n".join(lines))


# ---- indelible witness: a C2SP tlog-witness (its own key and state, in its own directory)

WitnessDataOpt = Annotated[
    Path, typer.Option("--data", help="The witness's directory (key and state).")
]


@witness_cli.command("init")
def witness_init(
    data: WitnessDataOpt,
    name: Annotated[str, typer.Option("--name", help="Witness name, e.g. witness.example/w1.")],
    as_json: JsonOpt = False,
) -> None:
    """Create the witness's Ed25519 cosigning key (mode 0600); print its cosigner vkey."""
    from indelible.service.witness import init_witness

    witness = init_witness(data, name, os.urandom)
    witness.state.close()
    _emit(
        as_json,
        {"name": name, "vkey": witness.vkey, "data": str(data)},
        f"created witness {name!r} in {data}\ncosigner vkey (publish it): {witness.vkey}",
    )


@witness_cli.command("add-log")
def witness_add_log(
    data: WitnessDataOpt,
    vkey: Annotated[str, typer.Option("--vkey", help="The log's verification key to trust.")],
    origin: Annotated[
        str | None, typer.Option(help="The log's checkpoint origin (default: the key's name).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Trust a log: cosign its checkpoints signed by VKEY."""
    from indelible.service.witness import open_witness

    witness = open_witness(data)
    try:
        trusted = witness.add_log(vkey, origin)
    finally:
        witness.state.close()
    _emit(as_json, {"origin": trusted, "vkey": vkey}, f"trusting {vkey} for origin {trusted}")


@witness_cli.command("serve")
def witness_serve(
    data: WitnessDataOpt,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8701,
) -> None:
    """Serve POST /add-checkpoint (c2sp.org/tlog-witness) until SIGTERM or Ctrl-C."""
    import uvicorn  # the server extra is imported on demand

    from indelible.server.witness_app import create_witness_app
    from indelible.service.witness import open_witness

    witness = open_witness(data)
    try:
        out.print(f"witness {witness.signer.name!r}, cosigner vkey: {witness.vkey}", markup=False)
        for origin in witness.state.origins():
            out.print(f"trusting log {origin}", markup=False)
        out.print(f"serving add-checkpoint on http://{host}:{port}/add-checkpoint", markup=False)
        sys.stdout.flush()
        uvicorn.run(create_witness_app(witness), host=host, port=port, log_level="warning")
    finally:
        witness.state.close()


# ---- indelible pg-capture: changes made directly in an application's PostgreSQL database

pg_capture_cli = typer.Typer(
    help="Capture changes made directly in an application's PostgreSQL database (docs/capture.md).",
    no_args_is_help=True,
)
app.add_typer(pg_capture_cli, name="pg-capture")

DsnOpt = Annotated[
    str,
    typer.Option(
        "--dsn",
        envvar="INDELIBLE_CAPTURE_DSN",
        help="libpq URL or connection string of the application's database "
        "(or INDELIBLE_CAPTURE_DSN).",
        show_default=False,
    ),
]
CaptureTableOpt = Annotated[
    str, typer.Option("--table", help="The captured table: schema.table (or on search_path).")
]


def _names(value: str | None) -> list[str] | None:
    return value.split(",") if value else None


@contextmanager
def _capture_db(dsn: str) -> Iterator[Any]:
    from indelible.service.pgcapture import connect, database_errors

    conn = connect(dsn, autocommit=False)
    try:
        with database_errors(dsn):
            yield conn
    finally:
        conn.close()


@pg_capture_cli.command("install")
def pg_capture_install(
    dsn: DsnOpt,
    table: CaptureTableOpt,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns to record (default: all).")
    ] = None,
    target_type: Annotated[
        str | None, typer.Option(help="The events' target type (default: the table's name).")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns of a unique key (default: the primary key)."),
    ] = None,
    relay_role: Annotated[
        str | None, typer.Option(help="A role to grant what the relay needs, and no more.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Install (or repair, or reshape) the outbox and triggers capturing one table."""
    from indelible.service.pgcapture import install

    with _capture_db(dsn) as conn:
        result = install(
            conn,
            table,
            columns=_names(columns),
            key=_names(key),
            target_type=target_type,
            relay_role=relay_role,
        )
    said = {
        "installed": "installed the capture of",
        "unchanged": "capture already installed, triggers recreated, on",
        "new_generation": f"started outbox generation {result.generation} of",
    }[result.outcome]
    _emit(
        as_json,
        result.to_dict(),
        f"{said} {result.table}: events {result.target_type}.created|updated|deleted, key "
        f"{','.join(result.key)}, columns {', '.join(c.name for c in result.columns)}",
    )


@pg_capture_cli.command("uninstall")
def pg_capture_uninstall(
    dsn: DsnOpt,
    table: CaptureTableOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Uninstall even if the outbox still holds rows.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove one table's triggers and outbox (the schema too, with the last one)."""
    from indelible.service.pgcapture import uninstall

    with _capture_db(dsn) as conn:
        result = uninstall(conn, table, force=force)
    _emit(
        as_json,
        result,
        f"removed the capture of {table}"
        + (f"; DISCARDED {result['discarded']} outbox rows" if result["discarded"] else ""),
    )


@pg_capture_cli.command("status")
def pg_capture_status(dsn: DsnOpt, as_json: JsonOpt = False) -> None:
    """Each captured table: triggers, outbox depth, oldest pending change, rejected rows."""
    from indelible.service.pgcapture import status

    with _capture_db(dsn) as conn:
        result = status(conn)
    lines = [] if result["installed"] else ["pg-capture is not installed in this database"]
    for capture in result["captures"]:
        age = capture["oldest_pending_age_s"]
        lines.append(
            f"{capture['table']} -> {capture['target_type']}: {capture['pending']} pending"
            + (f" (oldest {age:.1f} s)" if age is not None else "")
            + f", {capture['rejected']} rejected"
        )
        lines += [f"  PROBLEM: {problem}" for problem in capture["problems"]]
        lines += [
            f"  rejected {row['statement']}/{row['row']} at {row['rejected_at']}: {row['error']}"
            for row in capture["rejected_rows"]
        ]
    _emit(as_json, result, "\n".join(lines))


@pg_capture_cli.command("requeue")
def pg_capture_requeue(
    dsn: DsnOpt,
    table: Annotated[
        str | None, typer.Option("--table", help="Only this table's rows (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send rejected outbox rows again (after the limit that refused them was raised)."""
    from indelible.service.pgcapture import requeue

    with _capture_db(dsn) as conn:
        result = requeue(conn, table)
    _emit(as_json, result, f"requeued {result['requeued']} rejected rows")


@pg_capture_cli.command("relay")
def pg_capture_relay(
    dsn: DsnOpt,
    url: Annotated[str, typer.Option(help="Indelible's base URL, e.g. http://indelible:8700.")],
    token: Annotated[
        str,
        typer.Option(
            envvar="INDELIBLE_TOKEN",
            help="An API key that may ingest (or INDELIBLE_TOKEN).",
            show_default=False,
        ),
    ],
    batch: Annotated[int, typer.Option(help="Most events per request (1-1000).")] = 1000,
    poll: Annotated[
        float, typer.Option(help="Seconds between reads when no NOTIFY arrives.")
    ] = 5.0,
    max_backoff: Annotated[
        float, typer.Option(help="Longest wait, in seconds, between retries.")
    ] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Move the outbox into the Indelible log until SIGTERM or Ctrl-C (docs/capture.md)."""
    import logging
    import signal

    from indelible.service.pgcapture import Relay, RelayOptions, database_errors

    relay = Relay(RelayOptions(dsn, url, token, batch, poll, max_backoff))
    logger = logging.getLogger("indelible.pgcapture")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    previous = {
        signum: signal.signal(signum, lambda *_: relay.stop())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with database_errors(dsn):
            stats = relay.run()
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
    _emit(
        as_json,
        stats.to_dict(),
        f"relay stopped: {stats.relayed} events relayed, {stats.rejected} rejected",
    )


def _exit_code(exc: IndelibleError) -> int:
    if isinstance(exc, VerificationError):
        return 1
    return 2 if exc.status < 500 or isinstance(exc, ConfigError) else 3


def _fail(exc: IndelibleError, as_json: bool) -> NoReturn:
    code = _exit_code(exc)
    if as_json:
        body = exc.to_dict()
        if isinstance(exc, VerificationError):
            body["ok"] = False
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        label = "verification FAILED" if code == 1 else "error"
        err.print(f"{label}: [{exc.code}] {exc.message}", markup=False)
        for key, value in exc.details().items():
            if value is not None and key != "errors":
                err.print(f"  {key}: {value}", markup=False)
        for item in exc.details().get("errors", []):
            where = f"item {item['index']} " if "index" in item else ""
            err.print(
                f"  {where}{item['field'] or '/'}: {item['message']} ({item['rule']})", markup=False
            )
    raise SystemExit(code)


def tune_gc() -> None:
    """Audit events are acyclic dicts that reference counting frees; the cyclic collector's
    default thresholds rescan every live batch many times over (up to half the ingest cost).
    Collect cycles far less often, and keep start-up objects out of every scan."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; one top-level handler turns every Indelible error into a diagnostic."""
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        tune_gc()  # only as the process entry point, never when embedded
    as_json = "--json" in args
    try:
        app(args=args, prog_name="indelible", standalone_mode=False)
    except IndelibleError as exc:
        _fail(exc, as_json)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        err.print("aborted")
        return 2
    except FileNotFoundError as exc:
        _fail(InputError(f"no such file: {exc.filename}"), as_json)
    except OSError as exc:
        _fail(IndelibleError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")), as_json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
