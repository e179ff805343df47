"""An application for the kill test: several threads call ``record()`` in a loop and print
each event_id right after ``record()`` returns; the test SIGKILLs it at random moments.

``python -m tests.sdk.kill_app OUTBOX URL TOKEN RUN``. With ``INDELIBLE_SDK_TEST_BROKEN=1``
it prints the event_id BEFORE its outbox commit (a deliberately broken build), which the
test must catch; with ``INDELIBLE_SDK_TEST_SPILL=1`` its outbox holds 20 events and spills
the rest to its spill file. ``--drain`` instead delivers what the outbox holds, then prints
"drained".
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from indelible.sdk import Client, context

THREADS = 4


def _record_forever(client: Client, run: str, worker: int, lock: threading.Lock) -> None:
    broken = os.environ.get("INDELIBLE_SDK_TEST_BROKEN") == "1"
    n = 0
    with context(actor={"id": f"worker-{worker}", "type": "service"}, request_id=run):
        while True:
            n += 1
            fields = {"target": {"type": "counter", "id": f"{run}-{worker}"}, "data": {"n": n}}
            if broken:
                event = client.build_event("sdk.kill", **fields)
                with lock:
                    print(event["event_id"], flush=True)
                client.record_built([event])
            else:
                event_id = client.record("sdk.kill", **fields)
                with lock:
                    print(event_id, flush=True)


def main(argv: list[str]) -> int:
    outbox, url, token, run = argv[:4]
    bounds: dict[str, Any] = {}
    if os.environ.get("INDELIBLE_SDK_TEST_SPILL") == "1":  # a tiny outbox: most events spill
        bounds = {"max_events": 20, "when_full": "spill"}
    client = Client(url, token, outbox, max_backoff=1.0, base_backoff=0.05, poll=0.2, **bounds)
    if "--drain" in argv:
        drained = client.close(timeout=120)
        print("drained" if drained else f"NOT drained: {client.pending()} pending", flush=True)
        return 0 if drained else 1
    lock = threading.Lock()
    workers = [
        threading.Thread(target=_record_forever, args=(client, run, i, lock), daemon=True)
        for i in range(THREADS)
    ]
    print("ready", flush=True)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
