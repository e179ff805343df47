"""A writer process for the crash suite: clients append and print each ack once it returns.

Usage: python -m tests.crash_writer DATA_DIR RUN [--ack-before-commit]

Prints one line per acknowledged event id, flushed, only after `Sequencer.append` returned.
The parent kills this process with SIGKILL at a random moment and checks every printed id.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

from indelible.config import load_settings
from indelible.core.event import validate_event
from indelible.service.ingest import Publisher, Sequencer
from indelible.service.logs import open_log
from indelible.storage import open_store
from tests.factories import billing_event

CLIENTS = 8


def main() -> None:
    data, run = sys.argv[1], int(sys.argv[2])
    broken = "--ack-before-commit" in sys.argv
    settings = load_settings({"data": data})
    store = open_store(settings.store_url, create=False)
    opened = open_log(store, settings.keys_dir, "default", need_signer=True)
    now = lambda: time.time_ns() // 1_000_000  # noqa: E731
    sequencer = Sequencer(
        store,
        opened.info,
        clock_ms=now,
        random_bytes=os.urandom,
        wait_for_lease=True,
        ack_before_commit=broken,
    )
    assert opened.signer is not None
    publisher = Publisher(store, opened.info, opened.signer, clock_ms=now, interval=0.05)
    publisher.start()
    lock = threading.Lock()

    def client(number: int) -> None:
        try:
            run_client(number)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)  # a client that cannot append makes the whole run meaningless

    def run_client(number: int) -> None:
        counter = 0
        while True:
            size = 1 + (counter % 17)
            batch = [
                validate_event(
                    billing_event(((run * CLIENTS + number) << 20) + counter + k, salt=number),
                    now_ms=now(),
                )
                for k in range(size)
            ]
            counter += size
            receipts = sequencer.append(batch)
            with lock:
                sys.stdout.write("".join(f"{r.event_id}\n" for r in receipts))
                sys.stdout.flush()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
