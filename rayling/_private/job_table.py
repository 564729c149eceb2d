"""The head's table of jobs: the scripts (drivers) connected to the cluster and the code
they registered (pure logic).

Each driver is a job of its own: the first one to connect gets the cluster's first job
id, every later one a new id (the ids of its tasks and objects end with it). Worker
output goes to every connected driver. Functions and classes are registered once, by
content hash, and sent to each worker with the first task of them it runs.
"""

from __future__ import annotations

import time

from . import ids


class JobTable:
    def __init__(self) -> None:
        self.drivers: dict = {}  # connections of the scripts connected now -> job id
        self.first_job_id = ids.new_job_id()
        self._drivers_seen = 0
        self.functions: dict[bytes, tuple[bytes, str]] = {}  # fid -> (pickled code, name)
        self.namespaces: dict[bytes, str] = {}  # job id -> its namespace (kept after it)
        self.history: dict[bytes, dict] = {}  # job id -> its state-API row (kept after it)

    def add_driver(self, conn, namespace: str = "", pid: int | None = None) -> bytes:
        """A script connected: its job id."""
        job_id = ids.new_job_id() if self._drivers_seen else self.first_job_id
        self.drivers[conn] = job_id
        self._drivers_seen += 1
        self.namespaces[job_id] = namespace
        self.history[job_id] = {
            "job_id": job_id.hex(), "submission_id": None, "type": "DRIVER",
            "status": "RUNNING", "entrypoint": "", "namespace": namespace,
            "driver_pid": pid, "start_time": int(time.time() * 1000), "end_time": None,
        }
        return job_id

    def remove_driver(self, conn) -> bytes | None:
        """The connection closed: the job id, if it was a driver's (its job has
        ended: a driver connection closes when its script shuts down or exits)."""
        job_id = self.drivers.pop(conn, None)
        if job_id is not None:
            self.history[job_id].update(status="SUCCEEDED",
                                        end_time=int(time.time() * 1000))
        return job_id

    def register_function(self, fid: bytes, blob: bytes, name: str) -> None:
        self.functions.setdefault(fid, (blob, name))

    def code_for(self, fid: bytes, known: set[bytes]) -> bytes | None:
        """The code of ``fid`` if a worker that knows ``known`` has not seen it yet (and
        note that it has now)."""
        if not fid or fid in known:
            return None
        known.add(fid)
        return self.functions[fid][0]
