"""A writer process using the library (as tests/writer_process.py), for the kill campaign.

    python reliability/lib_writer.py HCM CONFIG PREFIX COUNT THREADS DURABILITY BATCH_MAX MISSION

Appends COUNT journal entries (message = request id PREFIX-<n>) over THREADS threads and prints,
flushed, "SEND <id>" before each write and "ACK <id>" once the store acknowledged it ("ERR <id>
<code>" for a refusal). A batch_max below THREADS keeps writes queued behind every batch, so
durable batches chain (one sync covers a landed batch and the next one's objects).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from arka_git_hcm.config import load_settings
from arka_git_hcm.services.store import HcmStore

CALLER = {"type": "agent", "id": "lib-writer", "roles": ["writer"]}


def main() -> None:
    hcm, config, prefix, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    threads, durability, batch_max, mission = int(sys.argv[5]), sys.argv[6], int(sys.argv[7]), sys.argv[8]
    settings = load_settings(hcm=hcm, config=config, logs=config.parent / "logs")
    store_cfg = settings.file.store.model_copy(
        update={"durability": durability, "batch_max": batch_max, "lock_timeout_s": 120}
    )
    settings = settings.model_copy(update={"file": settings.file.model_copy(update={"store": store_cfg})})
    store = HcmStore.open(settings)
    out = threading.Lock()

    def emit(line: str) -> None:
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def work(worker: int) -> None:
        for n in range(worker, count, threads):
            rid = f"{prefix}-{n}"
            emit(f"SEND {rid}")
            response = store.execute(
                {
                    "op": "HCM_APPEND_JOURNAL",
                    "request_id": rid,
                    "caller": CALLER,
                    "payload": {"mission_id": mission, "entry": {"entry_type": "note", "message": rid}},
                }
            )
            if response["status"] == "ok":
                emit(f"ACK {rid}")
            else:
                emit(f"ERR {rid} {response['error']['code']}")

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()


if __name__ == "__main__":
    main()
