"""The ``indelible`` command line.

Every command takes ``--json``: its output is then one JSON document on stdout (a documented
contract, see docs/cli.md); errors use the same ``{"error": {...}}`` shape as the HTTP API.
Exit codes: 0 success, 1 verification failed, 2 bad input or usage, 3 operational error.
"""

from __future__ import annotations

import gc
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
from indelible.core.event import DEFAULT_LIMITS, parse_batch, validate_batch
from indelible.core.note import parse_vkey
from indelible.errors import ConfigError, IndelibleError, InputError, NotFound, VerificationError
from indelible.service.ingest import Publisher, Receipt, Sequencer
from indelible.service.logs import OpenLog, default_origin, init_log, open_log
from indelible.service.proofs import consistency_proof, inclusion_proof
from indelible.service.verify import verify_log
from indelible.storage import open_store

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

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Data directory (default ./data).", show_default=False)
]
LogOpt = Annotated[str | None, typer.Option("--log", help="Log (tenant) name.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]

_APPEND_CHUNK = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _settings(data: Path | None, log: str | None) -> Settings:
    return load_settings({"data": str(data) if data else None, "log": log})


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
    origin: Annotated[
        str | None, typer.Option(help="Checkpoint origin (default <host>/indelible/<log>).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the store and the log's Ed25519 signing key (mode 0600)."""
    settings = _settings(data, log)
    store = open_store(settings.store_url, create=True)
    try:
        opened = init_log(
            store,
            settings.keys_dir,
            settings.log,
            origin or default_origin(socket.gethostname(), settings.log),
            clock_ms=now_ms,
            random_bytes=os.urandom,
        )
    finally:
        store.close()
    info = opened.info
    _emit(
        as_json,
        {"log": info.name, "origin": info.origin, "vkey": info.vkey, "store": settings.store_url},
        f"created log {info.name!r} in {settings.store_url}\norigin: {info.origin}\n"
        f"verification key (publish it): {info.vkey}",
    )


@app.command()
def append(
    file: Annotated[
        str, typer.Argument(help="A JSON object, a JSON array or NDJSON; - for stdin.")
    ],
    data: DataOpt = None,
    log: LogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append events; print receipts once they are durable, then sign a checkpoint."""
    settings = _settings(data, log)
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
def checkpoint(data: DataOpt = None, log: LogOpt = None, as_json: JsonOpt = False) -> None:
    """Sign a checkpoint if the tree grew, and print the latest one (a C2SP signed note)."""
    settings = _settings(data, log)
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
    data: DataOpt = None,
    log: LogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute everything from stored bytes; exit 1 naming the first bad seq."""
    settings = _settings(data, log)
    held = [path.read_text(encoding="utf-8") for path in checkpoint or []]
    with _opened(settings) as opened:
        verifier = parse_vkey(vkey) if vkey else opened.verifier
        size = opened.store.tree_size(opened.info.log_id)
        with _progress(size > 100_000 and not as_json) as bar:
            task = bar.add_task("verifying", total=size)
            report = verify_log(
                opened.store,
                opened.info,
                verifier,
                held=held,
                workers=workers or settings.verify_workers,
                progress=lambda done, total: bar.update(task, completed=done),
            )
    document = {"ok": True, **report.to_dict()}
    text = (
        f"ok: {report.size} entries, {report.checkpoints_checked} checkpoints verified"
        + (
            f"; {report.unpublished} entries not yet covered by a checkpoint"
            if report.unpublished
            else ""
        )
        + (f"; held checkpoints {report.held_checkpoint_sizes} consistent" if held else "")
    )
    if vkey is None:
        text += "\nnote: trusted the verification key stored in the log; pass --vkey to pin yours"
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
    as_json: JsonOpt = False,
) -> None:
    """Print the RFC 9162 inclusion proof of entry SEQ."""
    with _opened(_settings(data, log)) as opened:
        proof = inclusion_proof(opened.store, opened.info, seq, tree_size)
    _emit_proof(as_json, proof.to_dict())


@proof_app.command("consistency")
def proof_consistency(
    old: int, new: int, data: DataOpt = None, log: LogOpt = None, as_json: JsonOpt = False
) -> None:
    """Print the RFC 9162 consistency proof from tree size OLD to NEW."""
    with _opened(_settings(data, log)) as opened:
        proof = consistency_proof(opened.store, opened.info, old, new)
    _emit_proof(as_json, proof.to_dict())


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
    data: Path | None, log: str | None, host: str | None, port: int | None, config: Path | None
) -> Settings:
    return load_settings(
        {
            "data": str(data) if data else None,
            "log": log,
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


def _serve(settings: Settings) -> None:
    from indelible.server.runtime import Runtime  # the server extra is imported on demand
    from indelible.server.serve import serve, url_for

    runtime = Runtime.open(settings)
    try:
        runtime.start()  # takes the write leases now, so a second server fails here, clearly
        token = runtime.bootstrap_admin()
        for tenant in runtime.hub.logs():
            info = tenant.info
            out.print(
                f"log {info.name!r} in {settings.store_url}, origin {info.origin}", markup=False
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
    host: HostOpt = None,
    port: PortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP API for every tenant's log (one worker) until SIGTERM or Ctrl-C.

    When the store has no API key yet, an admin key of the operator tenant is created and
    printed once."""
    _serve(_server_settings(data, log, host, port, config))


@app.command()
def run(
    data: DataOpt = None,
    log: LogOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start Indelible: on first start create the store, the operator log, its signing key
    and an admin API key (printed once), then serve HTTP."""
    settings = _server_settings(data, log, host, port, config)
    if _ensure_log(settings):
        out.print(f"created log {settings.log!r} in {settings.store_url}", markup=False)
    _serve(settings)


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
