"""A full-speed store writer for load tests: `python tests/store_writer.py RUN_DIR SECONDS`.

Appends 100-row `losses` segments until the time is up, printing the count of segments written
after each one (so a reader knows how many must eventually be visible).
"""

import sys
import time
from pathlib import Path

from core.store.events import EventWriter

if __name__ == "__main__":
    writer = EventWriter(Path(sys.argv[1]))
    deadline = time.time() + float(sys.argv[2])
    step = 0
    while time.time() < deadline:
        writer.append("losses", [{"step": step, "name": "total", "value": float(i)} for i in range(100)])
        writer.flush()
        step += 1
        print(step, flush=True)
