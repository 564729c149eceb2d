"""rayling.data under memory pressure and on a terminal: a pipeline over five times more
data than the object store holds finishes with the store's peak use under its cap;
stages ask for their resources; the progress bar shows on a terminal and can be turned off.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import rayling

STORE_CAP = 200 * 1024 * 1024
BLOCKS = 100
BLOCK_BYTES = 10 * 1024 * 1024  # 100 blocks of 10 MiB: 1 GiB through a 200 MiB store


@pytest.fixture(scope="module")
def small_store():
    rayling.init(num_cpus=2, object_store_memory=STORE_CAP, resources={"disk": 1})
    rayling.data.DataContext.get_current().enable_progress_bars = False
    yield rayling
    rayling.shutdown()


def _store_peak() -> int:
    return max(n["ObjectStorePeak"] for n in rayling.nodes())


def _generate(batch):
    rows = len(batch["id"])
    width = BLOCK_BYTES // 8 // rows
    return {"id": batch["id"],
            "values": np.random.default_rng(int(batch["id"][0])).random((rows, width))}


class Halve:
    """A callable class, so the stage after it runs on actors (no fusion with the read)."""

    def __call__(self, batch):
        return {"id": batch["id"], "values": batch["values"][:, ::2]}


@pytest.mark.timeout(240)
def test_a_pipeline_over_five_times_the_store_finishes_under_its_cap(small_store, tmp_path):
    ds = (rayling.data.range(BLOCKS * 4, override_num_blocks=BLOCKS)
          .map_batches(_generate)
          .map_batches(Halve, concurrency=1))
    ds.write_parquet(str(tmp_path / "out"))
    files = os.listdir(tmp_path / "out")
    assert len(files) == BLOCKS
    table = pq.read_table(tmp_path / "out" / sorted(files)[-1])
    assert table.num_rows == 4 and table.column("id").to_pylist() == [396, 397, 398, 399]
    generated = BLOCKS * BLOCK_BYTES
    assert generated >= 5 * STORE_CAP
    assert _store_peak() <= STORE_CAP


@pytest.mark.timeout(60)
def test_a_stage_holds_the_resources_it_asks_for(small_store):
    def spans(batch):
        start = time.time()
        time.sleep(0.1)
        return {"start": np.array([start]), "end": np.array([time.time()])}

    out = sorted((r["start"], r["end"]) for r in rayling.data.range(
        3, override_num_blocks=3).map_batches(spans, resources={"disk": 1}).take_all())
    # The cluster has one "disk": the three tasks ran one after another.
    assert len(out) == 3 and all(a[1] <= b[0] for a, b in zip(out, out[1:], strict=False))


SCRIPT = """
import rayling, sys
rayling.init(num_cpus=2)
if sys.argv[1] == "off":
    rayling.data.DataContext.get_current().enable_progress_bars = False
rayling.data.range(1000, override_num_blocks=20).map(lambda r: r).take_all()
print("DONE", flush=True)
rayling.shutdown()
"""


def _run_on_a_terminal(mode: str) -> str:
    main, child = pty.openpty()
    # A terminal of 24 lines of 100 columns (a new pty has none, and tqdm draws nothing).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdin=child, stdout=child,
                            stderr=child, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.timeout(120)
def test_the_progress_bar_shows_on_a_terminal_and_can_be_turned_off():
    shown = _run_on_a_terminal("on")
    assert "DONE" in shown and "Running ReadRange->Map(<lambda>)" in shown
    hidden = _run_on_a_terminal("off")
    assert "DONE" in hidden and "Running" not in hidden
