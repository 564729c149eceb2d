"""The dashboard: a web server process the head starts (``python -m
rayling.dashboard.server``) that shows the cluster in a browser and serves its JSON
endpoints and Prometheus metrics.

    head daemon ──binds host:port, passes the socket──▶ this process (aiohttp)
    this process ──observer connection (Query)──▶ head: nodes, state rows, logs

It samples the nodes every second (ten minutes kept, for the charts) and answers every
other request from the head when it comes, in a thread (the client is blocking). The
pages are static files of this package: nothing is loaded from elsewhere. Bound to an
address other than loopback, every request needs the cluster token: ``Authorization:
Bearer <token>``, or the cookie the login page sets, which holds a key derived from the
token (seeing the cookie does not give the token). On loopback, a request must name a
loopback host (``Host``), so a web page cannot reach it by rebinding its own domain to
127.0.0.1. The endpoints are documented in docs/dashboard.md.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import os
import socket
import sys
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from .._private import protocol as p, session
from .._private.client import DaemonConnectionError
from .._private.version import VERSION
from ..util import state

STATIC = Path(__file__).parent / "static"
HISTORY = 600  # samples kept per node (one a second: ten minutes)
COOKIE = "rayling_token"
RAY_VERSION = "2.60.0"  # the Ray API version rayling speaks


class Dashboard:
    def __init__(self, head_socket: str, token: str, needs_login: bool) -> None:
        self.token = token
        self.cookie_key = hmac.new(token.encode(), b"rayling dashboard cookie",
                                   "sha256").hexdigest()
        self.needs_login = needs_login
        self.client = session.observe_socket(head_socket, token)
        self.history: dict[str, collections.deque] = {}  # node id -> (time, sample)
        self.nodes: list[dict] = []  # the latest ClusterNodes answer
        self.registry = CollectorRegistry()
        self.registry.register(_ClusterCollector(self))

    # -- sampling -------------------------------------------------------------------------
    def sample(self) -> None:
        """(A thread, every second) the nodes' load and store, kept for the charts."""
        self.nodes = self.client.query(p.ClusterNodes())
        now = time.time()
        for node in self.nodes:
            if not node["Alive"]:
                continue
            load = node.get("Load") or {}
            series = self.history.setdefault(node["NodeID"],
                                             collections.deque(maxlen=HISTORY))
            series.append({"t": now, "cpu": load.get("cpu_percent"),
                           "mem": load.get("mem_used"), "mem_total": load.get("mem_total"),
                           "store": node["ObjectStoreUsed"],
                           "store_total": node["ObjectStoreCapacity"]})

    async def sample_forever(self) -> None:
        """Sample every second; a head that stops answering for ten seconds in a row
        has gone (or hangs), and so does the dashboard."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                await loop.run_in_executor(None, self.sample)
                failures = 0
            except Exception as e:  # noqa: BLE001 - said below; the head may be busy
                failures += 1
                sys.stderr.write(f"dashboard: cannot sample the cluster: {e}\n")
                if failures >= 10 or isinstance(e, DaemonConnectionError):
                    os._exit(0)
            await asyncio.sleep(1.0)

    # -- authentication -------------------------------------------------------------------
    def allowed(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return _same(header[len("Bearer "):], self.token)
        return _same(request.cookies.get(COOKIE, ""), self.cookie_key)

    @web.middleware
    async def guard(self, request: web.Request, handler):
        if not self.needs_login:
            if _loopback_host(request.host):
                return await handler(request)
            return web.Response(status=403, text="this dashboard answers requests for a "
                                "loopback host only (localhost, 127.0.0.1, [::1])")
        if request.path in ("/login", "/static/style.css") or self.allowed(request):
            return await handler(request)
        if request.path.startswith(("/api/", "/metrics")):
            return web.json_response({"result": False, "msg": "the cluster token is needed "
                                      "(Authorization: Bearer <token>)"}, status=401)
        raise web.HTTPFound("/login")

    async def login_page(self, request: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "login.html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("token", ""))
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await asyncio.sleep(1.0)  # (guessing stays slow)
            raise web.HTTPFound("/login?failed=1")
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, self.cookie_key, httponly=True, samesite="Strict")
        raise response

    # -- endpoints ------------------------------------------------------------------------
    async def _ask(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: fn(*args, **kwargs))

    async def index(self, request: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "index.html")

    async def cluster(self, request: web.Request) -> web.Response:
        """Every node with its latest sample and its history (for the overview)."""
        nodes = []
        for node in self.nodes:
            nodes.append({
                "node_id": node["NodeID"], "ip": node["NodeManagerAddress"],
                "hostname": node["NodeManagerHostname"], "alive": node["Alive"],
                "is_head": node["IsHead"], "resources": node["Resources"],
                "available": node["AvailableResources"], "load": node.get("Load"),
                "store_used": node["ObjectStoreUsed"],
                "store_capacity": node["ObjectStoreCapacity"],
                "history": list(self.history.get(node["NodeID"], ())),
            })
        return web.json_response({"nodes": nodes, "time": time.time()})

    async def state_rows(self, request: web.Request) -> web.Response:
        """Ray's state REST path: /api/v0/{tasks,actors,objects,nodes,workers,jobs,
        placement_groups}?limit=&filter_keys=&filter_predicates=&filter_values="""
        kind = request.match_info["kind"]
        record = _RECORDS.get(kind)
        if record is None:
            raise web.HTTPNotFound(text=f"no state kind {kind!r}")
        query = request.query
        keys, predicates = query.getall("filter_keys", []), query.getall("filter_predicates", [])
        values = query.getall("filter_values", [])
        if not (len(keys) == len(predicates) == len(values)):
            return web.json_response({"result": False, "msg": "filter_keys, "
                                      "filter_predicates and filter_values go together"},
                                     status=400)
        try:
            limit = int(query.get("limit", "100"))
            rows, total = await self._ask(
                state.query_rows, kind, None, list(zip(keys, predicates, values,
                                                       strict=True)), limit, None)
        except ValueError as e:
            return web.json_response({"result": False, "msg": str(e)}, status=400)
        rows = [record.from_row(row).asdict() for row in rows]
        return web.json_response({"result": True, "msg": "", "data": {"result": {
            "total": total, "num_after_truncation": len(rows), "result": rows}}},
            dumps=_dumps)

    async def summary(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        summarize = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
                     "objects": state.summarize_objects}.get(kind)
        if summarize is None:
            raise web.HTTPNotFound(text=f"no summary of {kind!r}")
        result = await self._ask(summarize)
        return web.json_response({"result": True, "msg": "", "data": {"result": result}},
                                 dumps=_dumps)

    async def logs(self, request: web.Request) -> web.Response:
        """/api/v0/logs?node_id=: a node's files, by kind."""
        files = await self._ask(state.list_logs, node_id=request.query.get("node_id"))
        return web.json_response({"result": True, "msg": "", "data": {"result": files}})

    async def log_file(self, request: web.Request) -> web.Response:
        """/api/v0/logs/file?(task_id|actor_id|pid|filename)=&node_id=&lines=: text."""
        query = request.query
        kwargs = {key: query[key] for key in ("task_id", "actor_id", "filename", "node_id")
                  if key in query}
        try:
            for key in ("pid", "attempt_number"):
                if key in query:
                    kwargs[key] = int(query[key])
            lines = int(query.get("lines", "1000"))
            text = await self._ask(lambda: "\n".join(state.get_log(tail=lines, **kwargs)))
        except (ValueError, LookupError) as e:
            return web.Response(status=400, text=str(e))
        except Exception as e:  # noqa: BLE001 - e.g. the file is not there
            return web.Response(status=404, text=str(e))
        return web.Response(text=text)

    async def jobs(self, request: web.Request) -> web.Response:
        """Ray's job REST path (GET /api/jobs/): the jobs, as Ray's JobDetails."""
        rows = await self._ask(state.list_jobs, limit=10_000)
        return web.json_response([_job_details(r) for r in rows])

    async def job(self, request: web.Request) -> web.Response:
        job = await self._ask(state.get_job, request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(text=f"no job {request.match_info['job_id']}")
        return web.json_response(_job_details(job))

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION, "ray_version": RAY_VERSION,
                                  "session_name": "rayling"})

    async def metrics(self, request: web.Request) -> web.Response:
        body = await self._ask(generate_latest, self.registry)
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def metrics_app(self) -> web.Application:
        """Only /metrics (init(_metrics_export_port=), for a Prometheus scraper)."""
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/metrics", self.metrics)
        return app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_get("/api/cluster", self.cluster)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/v0/logs", self.logs)
        app.router.add_get("/api/v0/logs/file", self.log_file)
        app.router.add_get("/api/v0/{kind}/summarize", self.summary)
        app.router.add_get("/api/v0/{kind}", self.state_rows)
        app.router.add_get("/api/jobs/", self.jobs)
        app.router.add_get("/api/jobs/{job_id}", self.job)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_static("/static/", STATIC)
        return app


def _loopback_host(host: str) -> bool:
    """Whether a request's Host header names this machine's loopback."""
    if host.startswith("["):
        return host.split("]", 1)[0] == "[::1"
    return host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost")


def _same(given: str, secret: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), secret.encode())


_RECORDS = {"tasks": state.TaskState, "actors": state.ActorState,
            "objects": state.ObjectState, "nodes": state.NodeState,
            "workers": state.WorkerState, "jobs": state.JobState,
            "placement_groups": state.PlacementGroupState}


def _job_details(job: state.JobState) -> dict:
    return {"type": job.type, "job_id": job.job_id, "submission_id": job.submission_id,
            "status": job.status, "entrypoint": job.entrypoint, "message": "",
            "start_time": job.start_time, "end_time": job.end_time,
            "driver_info": {"id": job.job_id, "pid": str(job.driver_pid)},
            "namespace": job.namespace}


def _dumps(value) -> str:
    return json.dumps(value, default=str)


class _ClusterCollector:
    """Prometheus metrics read at each scrape: per node CPU, memory, object store; tasks
    and actors by state."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def collect(self):
        cpu = GaugeMetricFamily("rayling_node_cpu_utilization",
                                "CPU use of the node's machine (percent)",
                                labels=["NodeId", "ip"])
        mem = GaugeMetricFamily("rayling_node_mem_used", "Memory in use on the node (bytes)",
                                labels=["NodeId", "ip"])
        mem_total = GaugeMetricFamily("rayling_node_mem_total",
                                      "Memory of the node (bytes)", labels=["NodeId", "ip"])
        store = GaugeMetricFamily("rayling_object_store_memory",
                                  "Object store bytes in use", labels=["NodeId", "ip"])
        resources = GaugeMetricFamily("rayling_resources", "Logical resources of the node",
                                      labels=["NodeId", "ip", "Name", "State"])
        for node in self.dashboard.nodes:
            if not node["Alive"]:
                continue
            labels = [node["NodeID"], node["NodeManagerAddress"]]
            load = node.get("Load")
            if load:
                cpu.add_metric(labels, load["cpu_percent"])
                mem.add_metric(labels, load["mem_used"])
                mem_total.add_metric(labels, load["mem_total"])
            store.add_metric(labels, node["ObjectStoreUsed"])
            for name, total in node["Resources"].items():
                free = node["AvailableResources"].get(name, 0)
                resources.add_metric(labels + [name, "USED"], total - free)
                resources.add_metric(labels + [name, "AVAILABLE"], free)
        yield from (cpu, mem, mem_total, store, resources)
        tasks = GaugeMetricFamily("rayling_tasks", "Tasks by state (latest attempts kept "
                                  "in the head's history)", labels=["State", "Name"])
        for name, entry in state.summarize_tasks()["cluster"]["summary"].items():
            for task_state, count in entry["state_counts"].items():
                tasks.add_metric([task_state, name], count)
        yield tasks
        actors = GaugeMetricFamily("rayling_actors", "Actors by state",
                                   labels=["State", "Name"])
        for name, entry in state.summarize_actors()["cluster"]["summary"].items():
            for actor_state, count in entry["state_counts"].items():
                actors.add_metric([actor_state, name], count)
        yield actors
        yield from _user_metrics(self.dashboard.client.query(p.UserMetricRows()))


def _user_metrics(rows: list[dict]):
    """The application metrics (rayling.util.metrics) as Prometheus families."""
    for row in rows:
        labels = row["tag_keys"]
        if row["kind"] == "counter":
            family = CounterMetricFamily(row["name"], row["description"], labels=labels)
            for tags, values in row["points"]:
                family.add_metric(tags, values[0])
        elif row["kind"] == "gauge":
            family = GaugeMetricFamily(row["name"], row["description"], labels=labels)
            for tags, values in row["points"]:
                family.add_metric(tags, values[0])
        else:
            family = HistogramMetricFamily(row["name"], row["description"], labels=labels)
            bounds = [*(repr(b) for b in row["boundaries"]), "+Inf"]
            for tags, values in row["points"]:
                counts, total = values[:len(bounds)], values[-2]
                cumulative, running = [], 0.0
                for bound, count in zip(bounds, counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                family.add_metric(tags, cumulative, total)
        yield family


def _die_with_parent() -> None:
    """End when the head daemon that started us ends."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    _die_with_parent()
    parent = os.getppid()
    config = json.loads(sys.stdin.readline())
    token = os.environ.pop("RAYLING_TOKEN", "")
    dashboard = Dashboard(config["head_socket"], token, config["needs_login"])
    if os.getppid() != parent:  # (the head ended before we could ask it to tell us)
        return

    async def serve() -> None:
        for fd, app in ((config["fd"], dashboard.app), (config["metrics_fd"],
                                                         dashboard.metrics_app)):
            if fd is not None:
                runner = web.AppRunner(app(), access_log=None)
                await runner.setup()
                await web.SockSite(runner, socket.socket(fileno=fd)).start()
        await dashboard.sample_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
