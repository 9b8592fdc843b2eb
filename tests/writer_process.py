"""A separate writer process for the concurrency and crash tests.

    python tests/writer_process.py CLIENT_DIR PREFIX COUNT [THREADS] [DURABILITY] [BATCH_MAX]

Appends COUNT journal entries to mission m1 (request ids PREFIX-<n>), spread over THREADS
threads, and prints "ACK <request_id>" (flushed) only after the store acknowledged each one.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from arka_git_hcm.config import FileConfig, Settings, StoreConfig
from arka_git_hcm.services.store import HcmStore


def main() -> None:
    client, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    durability = sys.argv[5] if len(sys.argv) > 5 else "fast"
    # a batch_max below THREADS keeps writes queued behind every batch: the chained group commit
    batch_max = int(sys.argv[6]) if len(sys.argv) > 6 else 32
    settings = Settings(
        hcm_path=client / "hcm",
        config_path=client / "config",
        log_path=client / "logs",
        file=FileConfig(store=StoreConfig(durability=durability, lock_timeout_s=120, batch_max=batch_max)),
    )
    store = HcmStore.open(settings)
    out = threading.Lock()

    def work(worker: int) -> None:
        for n in range(worker, count, threads):
            rid = f"{prefix}-{n}"
            response = store.execute(
                {
                    "op": "HCM_APPEND_JOURNAL",
                    "request_id": rid,
                    "caller": {"type": "agent", "id": "writer", "roles": ["writer"]},
                    "payload": {
                        "mission_id": "m1",
                        "entry": {
                            "author_type": "agent",
                            "author_id": "writer",
                            "entry_type": "note",
                            "message": rid,
                        },
                    },
                }
            )
            if response["status"] == "ok":
                with out:
                    sys.stdout.write(f"ACK {rid}\n")
                    sys.stdout.flush()
            else:
                with out:
                    sys.stdout.write(f"ERR {rid} {response['error']['code']}\n")
                    sys.stdout.flush()

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()


if __name__ == "__main__":
    main()
