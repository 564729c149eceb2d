"""Every message that crosses a rayling socket, declared once (peers.py says which ones
travel directly between a caller and an actor's worker).

A connection carries frames: a 4-byte little-endian length, then a msgpack array of
messages (several messages per frame, so many small ones cost one system call).
Messages are msgspec Structs encoded as arrays with an integer tag, which keeps them
small and makes decoding validate each field's type. What a message names is typed too:
a scheduling strategy is a Struct per kind, a query a Struct per question.

Who sends what:

    driver/worker -> daemon   Hello, RefUpdate, RegisterFunction, SubmitTask, PutObject,
                              ReserveShm, GetObjects, CancelTask, Blocked, Unblocked,
                              TaskDone, Logs, ProgressBar, Query, Shutdown, CreateActor,
                              KillActor, CallsReceived, ReleaseShm, GeneratorItem,
                              GeneratorConsumed, CreatePlacementGroup,
                              RemovePlacementGroup, MetricsReport
    daemon -> driver/worker   Welcome, ExecuteTask, ObjectReady, CancelTask, ShmReserved,
                              Reply, Warning, Logs, ProgressBar, Rejected, CallsInDoubt,
                              GeneratorItem, GeneratorConsumed
    node daemon -> head       Hello(kind="node"), RegisterNode, PullDone, Heartbeat, Logs,
                              LogsRead
    head -> node daemon       Welcome, SpawnWorkers, KillWorker, UnlinkSegments, PullObject,
                              ReadLogs
    node -> node (transfer)   Hello(kind="transfer"), FetchSegment; the answer is raw bytes
"""

from __future__ import annotations

import hmac
import struct
from typing import Any, Literal

import msgspec

MAX_FRAME = 256 * 1024 * 1024  # a frame larger than this is a protocol violation
_LEN = struct.Struct("<I")


class _Msg(msgspec.Struct, array_like=True, tag=True, omit_defaults=False):
    pass


class ObjectData(msgspec.Struct, array_like=True):
    """How one object's value travels: inline bytes when small, a shared-memory segment
    name when large. ``error`` marks a stored exception. ``contained`` lists the ids of
    refs pickled inside the value, which stay alive as long as this object does."""

    inline: bytes | None = None
    shm: str | None = None
    size: int = 0
    error: bool = False
    contained: list[bytes] = []
    where: bytes | None = None  # a large object on this other node: ask for a local copy


class SpreadStrategy(msgspec.Struct, array_like=True, frozen=True, tag="spread"):
    """Spread tasks over nodes: the least loaded node, ties round-robin."""


class NodeAffinity(msgspec.Struct, array_like=True, frozen=True, tag="node"):
    """Run on this node. ``soft``: elsewhere if it is dead or could never fit the task;
    ``spill``: also elsewhere while it is busy (Ray's ``_spill_on_unavailable``)."""

    node_id: bytes
    soft: bool
    spill: bool = False


Strategy = SpreadStrategy | NodeAffinity | None  # None: the default strategy


ClientKind = Literal["driver", "worker", "node", "peer", "transfer", "observer"]


class Hello(_Msg, tag=1):
    kind: ClientKind  # who connects: a script, a worker, a node daemon (to the head), a
    # command that only asks about the cluster (observer: no job, no worker output), a
    # client calling an actor directly, a node fetching an object
    pid: int
    worker_id: bytes
    token: str
    job_id: bytes | None = None
    listen_path: str = ""  # where this client accepts direct calls and results
    listen_tcp: str = ""  # the same, for clients on other nodes ("host:port")
    node_id: bytes = b""  # a worker's node (workers of joined nodes connect over TCP)
    namespace: str = ""  # a driver's: where its job's named actors live


class Welcome(_Msg, tag=2):
    node_id: bytes
    job_id: bytes
    node_ip: str
    session_dir: str
    resources: dict[str, float]
    dashboard_url: str = ""  # "host:port" of the head's dashboard ("": none)


class Rejected(_Msg, tag=3):
    reason: str


class RefUpdate(_Msg, tag=4):
    """A process started (adds) or stopped (dels) holding refs to these objects."""

    adds: list[bytes]
    dels: list[bytes]


class RegisterFunction(_Msg, tag=5):
    fid: bytes
    blob: bytes
    name: str


class SubmitTask(_Msg, tag=6):
    task_id: bytes
    fid: bytes
    name: str
    args: bytes  # serialized (args, kwargs) with top-level refs replaced by markers
    deps: list[bytes]  # ids of top-level ref arguments, resolved before the task runs
    contained: list[bytes]  # refs nested inside the arguments, kept alive while queued
    num_returns: int
    resources: dict[str, float]
    max_retries: int
    retry_exceptions: bool = False
    actor_id: bytes | None = None  # set for an actor method call
    method: str = ""
    direct_worker: bytes | None = None  # the call was sent straight to this actor worker
    strategy: Strategy = None
    retry_on: bytes = b""  # with retry_exceptions: the pickled exception types (none: any)
    max_calls: int = 0  # a worker that ran this function this many times exits (0: never)
    generator: str = ""  # "streaming": its values stream back as GeneratorItems, and its
    # one return is the end of the stream; "dynamic": its one return holds their refs
    backpressure: int = 0  # streaming: pause while this many values are not consumed
    capture: bool = False  # placed in a group, with the tasks it starts going there too
    env: dict[str, str] = {}  # runtime_env env_vars it runs with
    concurrency_group: str = ""  # an actor call: the group it runs in (""; the method's)
    events: bool = True  # recorded in the task history (enable_task_events)


class ActorStart(msgspec.Struct, array_like=True):
    """What an actor's creation task tells its worker about the actor."""

    name: str  # "" if unnamed
    resources: dict[str, float]  # what it holds for its whole life
    reconstructed: bool  # a restart: its worker died before
    capture: bool = False  # placed in a group, with what it starts going there too
    concurrency_groups: dict[str, int] = {}  # its named groups' max concurrency


class ExecuteTask(_Msg, tag=7):
    task_id: bytes
    job_id: bytes
    fid: bytes
    function: bytes | None  # sent with the first task of a function to each worker
    name: str
    args: bytes
    deps: list[ObjectData]
    num_returns: int
    gpu_ids: list[int]
    actor_id: bytes | None = None  # set when the worker hosts an actor
    method: str = ""  # "__init__" creates the actor; otherwise the method to call
    max_concurrency: int = 1
    is_async: bool = False
    dep_ids: list[bytes] = []  # ids of deps; an empty ObjectData means "fetch it yourself"
    owner_path: str = ""  # a direct call: send the results to this caller's socket
    owner_node: bytes = b""  # ... which lives on this node
    retry_exceptions: bool = False  # an exception it raises may be retried ...
    retry_on: bytes = b""  # ... if it is one of these pickled types (none: any)
    max_calls: int = 0  # the worker exits after running this function this many times
    resources: dict[str, float] = {}  # a task's resources (an actor call: the actor's)
    actor: ActorStart | None = None  # set on an actor's creation task
    generator: str = ""  # see SubmitTask.generator
    backpressure: int = 0  # see SubmitTask.backpressure
    consumed: int = 0  # ... and how many values the caller took already (a rerun)
    capture: bool = False  # see SubmitTask.capture
    env: dict[str, str] = {}  # environment variables it runs with (an actor: for life)
    concurrency_group: str = ""  # see SubmitTask.concurrency_group


class TaskDone(_Msg, tag=8):
    task_id: bytes
    results: list[ObjectData]
    actor_exit: bool = False  # the actor called exit_actor(): end it, do not restart
    direct: bool = False  # the worker already gave the results to the caller
    retryable: bool = False  # it raised an exception its retry_exceptions names
    retiring: bool = False  # the worker exits now (max_calls): give it no more work
    failed: bool = False  # it raised (its results may not show it: num_returns=0, a stream)


class GeneratorItem(_Msg, tag=36):
    """The ``index``-th value a streaming generator task yielded (object id: the task's
    return ``index + 1``): worker -> daemon -> the task's submitter."""

    task_id: bytes
    index: int
    data: ObjectData


class GeneratorConsumed(_Msg, tag=37):
    """The caller has taken ``count`` values of a streaming task that pauses while too
    many are not consumed (caller -> daemon -> the task's worker)."""

    task_id: bytes
    count: int


class PutObject(_Msg, tag=9):
    object_id: bytes
    data: ObjectData


class ReserveShm(_Msg, tag=10):
    req_id: int
    object_id: bytes
    size: int


class ShmReserved(_Msg, tag=11):
    req_id: int
    name: str | None
    error: str | None = None
    preallocated: bool = False  # the segment exists with its pages allocated: just map it


class ReleaseShm(_Msg, tag=35):
    """The segment reserved as ``name`` could not be made (its memory is short): give
    its room in the store back."""

    name: str


class GetObjects(_Msg, tag=12):
    """Send me an ObjectReady for each of these once it exists."""

    object_ids: list[bytes]


class ObjectReady(_Msg, tag=13):
    object_id: bytes
    data: ObjectData


class CancelTask(_Msg, tag=14):
    task_id: bytes
    force: bool
    recursive: bool = False  # also the tasks it submitted, and theirs


class Blocked(_Msg, tag=15):
    """The worker's task waits in get/wait: lend its CPUs to other tasks."""


class Unblocked(_Msg, tag=16):
    pass


class LogLine(msgspec.Struct, array_like=True):
    pid: int
    name: str
    text: str
    is_err: bool = False


class Logs(_Msg, tag=17):
    lines: list[LogLine]


class ProgressBar(_Msg, tag=32):
    """The state of a progress bar drawn by a task (tqdm_ray); the driver draws it."""

    pid: int
    bar_id: str  # unique per bar
    desc: str
    total: float | None
    n: float
    unit: str
    closed: bool


class ClusterNodes(msgspec.Struct, array_like=True, tag="nodes"):
    """Every node's facts (rayling.nodes())."""


class ClusterResources(msgspec.Struct, array_like=True, tag="cluster_resources"):
    """The live nodes' resources in total."""


class AvailableResources(msgspec.Struct, array_like=True, tag="available_resources"):
    """The live nodes' free resources."""


class NamedActor(msgspec.Struct, array_like=True, tag="get_actor"):
    """The live actor of this name (its info dict), or None."""

    name: str
    namespace: str


class ActorList(msgspec.Struct, array_like=True, tag="actors"):
    """Every actor's info dict."""


class PlacementGroupInfo(msgspec.Struct, array_like=True, tag="placement_group"):
    """The info dict of the placement group ``pg_id`` (or named ``name``), or None."""

    pg_id: bytes
    name: str = ""


class PlacementGroupTable(msgspec.Struct, array_like=True, tag="placement_groups"):
    """Every placement group's info dict."""


class JobNamespace(msgspec.Struct, array_like=True, tag="job_namespace"):
    """The namespace of the job ``job_id`` (its driver's), or None if it is unknown."""

    job_id: bytes


class StoreStats(msgspec.Struct, array_like=True, tag="stats"):
    """Counters of the store, objects and workers (for tests and benchmarks)."""


class ActorAddress(msgspec.Struct, array_like=True, tag="actor_address"):
    """Where the caller reaches the actor's worker directly; answered once it is alive
    (None: go through the daemon)."""

    actor_id: bytes


class NodeLogs(msgspec.Struct, array_like=True, tag="logs"):
    """A node's log files (``name`` empty: their names and sizes) or a piece of one:
    from byte ``offset``, or its last ``tail`` lines when ``offset`` < 0."""

    node_id: bytes
    name: str = ""
    offset: int = -1
    tail: int = 1000


class UserMetricRows(msgspec.Struct, array_like=True, tag="user_metrics"):
    """The application metrics of every process, totalled (user_metrics.py)."""


class TaskSummary(msgspec.Struct, array_like=True, tag="task_summary"):
    """Tasks by name and state, counted on the head (task_events.summary)."""


class StateRows(msgspec.Struct, array_like=True, tag="state"):
    """Rows of the state API: ``kind`` is tasks, actors, objects, nodes, workers, jobs
    or placement_groups; each filter is (field, "=" or "!=", value); at most ``limit``
    rows (see state_tables.py)."""

    kind: str
    filters: list[tuple[str, str, str]]
    limit: int


QueryKind = (ClusterNodes | ClusterResources | AvailableResources | NamedActor | ActorList
             | JobNamespace | PlacementGroupInfo | PlacementGroupTable | StoreStats
             | ActorAddress | StateRows | NodeLogs | UserMetricRows | TaskSummary)


class Query(_Msg, tag=18):
    req_id: int
    what: QueryKind


class Reply(_Msg, tag=19):
    req_id: int
    value: Any
    error: str | None = None


class Warning(_Msg, tag=20):  # noqa: A001 - the wire name
    text: str


class Shutdown(_Msg, tag=21):
    pass


class CreateActor(_Msg, tag=22):
    """Start an actor. Its creation task's return 0 is the object that keeps it alive:
    every handle holds a ref to it, and when the last one goes the actor ends."""

    req_id: int  # 0: no answer wanted; otherwise a Reply says which actor (named actors)
    actor_id: bytes
    task_id: bytes
    fid: bytes  # the class, sent earlier with RegisterFunction
    class_name: str
    args: bytes
    deps: list[bytes]
    contained: list[bytes]
    place: dict[str, float]  # resources that must be free to place the actor
    hold: dict[str, float]  # resources it holds for its whole life
    max_restarts: int
    max_task_retries: int
    max_concurrency: int
    is_async: bool
    methods: bytes  # the handle's method table (pickled), for get_actor
    name: str = ""
    namespace: str = ""
    detached: bool = False
    get_if_exists: bool = False
    strategy: Strategy = None
    capture: bool = False  # placed in a group, with what it starts going there too
    env: dict[str, str] = {}  # runtime_env env_vars it runs with, for life
    concurrency_groups: dict[str, int] = {}  # named groups of its methods: max concurrency


class CreatePlacementGroup(_Msg, tag=38):
    """Reserve ``bundles`` (resource dicts) as ``strategy`` says; ``ready_id`` becomes
    ready (True, or the error) once they are. It ends with job ``job_id`` unless
    ``detached``."""

    pg_id: bytes
    bundles: list[dict[str, float]]
    strategy: str
    name: str
    detached: bool
    ready_id: bytes
    job_id: bytes


class RemovePlacementGroup(_Msg, tag=39):
    pg_id: bytes


class KillActor(_Msg, tag=23):
    actor_id: bytes
    no_restart: bool


class RegisterNode(_Msg, tag=24):
    """A node daemon joins the cluster (right after its Hello)."""

    node_id: bytes
    ip: str
    hostname: str
    resources: dict[str, float]
    store_capacity: int
    transfer_address: str  # "host:port" where it serves its objects to other nodes
    shm_session: str  # its shared-memory segments are named /rl<shm_session>_<random>
    max_workers: int  # how many worker processes it may run


class SpawnWorkers(_Msg, tag=25):
    count: int


class KillWorker(_Msg, tag=26):
    pid: int


class UnlinkSegments(_Msg, tag=27):
    names: list[str]


class PullObject(_Msg, tag=28):
    """Copy segment ``source`` of the node serving at ``address`` into local ``name``."""

    object_id: bytes
    address: str
    source: str
    size: int
    name: str


class PullDone(_Msg, tag=29):
    object_id: bytes
    name: str
    error: str | None = None


class NodeLoad(msgspec.Struct, array_like=True):
    """A node's machine, sampled by its daemon every second."""

    cpu_percent: float  # all CPUs, since the last sample
    mem_used: int  # bytes
    mem_total: int


class Heartbeat(_Msg, tag=30):
    """Both ways, every second; a node's also carries its load (NodeLoad)."""

    load: NodeLoad | None = None


class MetricSeries(msgspec.Struct, array_like=True):
    """One application metric of one process (rayling.util.metrics), all its series."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tag_keys: list[str]
    boundaries: list[float]  # a histogram's buckets' upper bounds
    points: list[tuple[list[str], list[float]]]  # (tag values, value or buckets+sum+count)


class MetricsReport(_Msg, tag=42):
    """A process's metrics that changed (each whole): process -> head."""

    series: list[MetricSeries]


class ReadLogs(_Msg, tag=40):
    """List a node's log files (``name`` empty) or read a piece of one (see
    log_files.read_log): head -> node; the node answers with LogsRead."""

    req_id: int
    name: str
    offset: int
    tail: int


class LogsRead(_Msg, tag=41):
    req_id: int
    value: Any
    error: str | None = None


class CallsInDoubt(_Msg, tag=33):
    """An actor's worker died with these calls sent to it straight by you (each with its
    number of results): which of them did you get the results of? Read everything that
    worker sent you before answering."""

    actor_id: bytes
    worker_id: bytes
    calls: list[tuple[bytes, int]]


class CallsReceived(_Msg, tag=34):
    """The answer to CallsInDoubt: the calls it asked about, those whose results
    arrived, and those results (None for one no longer held here)."""

    actor_id: bytes
    asked: list[bytes] | None  # (None: all of them)
    received: list[tuple[bytes, list[ObjectData | None]]]


class FetchSegment(_Msg, tag=31):
    """Send me ``size`` bytes of this segment from ``offset`` (answered with raw bytes)."""

    name: str
    size: int
    offset: int = 0


Message = (
    Hello
    | Welcome
    | Rejected
    | RefUpdate
    | RegisterFunction
    | SubmitTask
    | ExecuteTask
    | TaskDone
    | PutObject
    | ReserveShm
    | ShmReserved
    | GetObjects
    | ObjectReady
    | CancelTask
    | Blocked
    | Unblocked
    | Logs
    | ProgressBar
    | Query
    | Reply
    | Warning
    | Shutdown
    | CreateActor
    | KillActor
    | RegisterNode
    | SpawnWorkers
    | KillWorker
    | UnlinkSegments
    | PullObject
    | PullDone
    | Heartbeat
    | FetchSegment
    | CallsInDoubt
    | CallsReceived
    | ReleaseShm
    | GeneratorItem
    | GeneratorConsumed
    | CreatePlacementGroup
    | RemovePlacementGroup
    | ReadLogs
    | LogsRead
    | MetricsReport
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Message])


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of a "host:port" address as messages carry them."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def token_matches(given: str, token: str) -> bool:
    """Compare a peer's token with ours in constant time (no timing hints to guessers)."""
    return hmac.compare_digest(given.encode(), token.encode())


class ProtocolError(Exception):
    """A peer sent bytes that are not a valid rayling frame."""


def encode_frame(messages: list) -> bytes:
    """One frame holding ``messages``, ready to write to a socket."""
    body = _encoder.encode(messages)
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes | memoryview) -> list:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as e:
        raise ProtocolError(f"malformed message: {e}") from None


class FrameReader:
    """Splits a byte stream into decoded message lists (sans-I/O: feed bytes, get messages)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes, one_frame: bool = False) -> list:
        """Add received bytes; return every message of every complete frame (of the
        first one only, with ``one_frame``: the rest stays buffered for the next call)."""
        buf = self._buf
        buf += data
        out: list = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if length > self.max_frame:
                raise ProtocolError(
                    f"frame of {length} bytes exceeds the {self.max_frame} limit")
            end = pos + 4 + length
            if end > n:
                break
            out.extend(decode_body(memoryview(buf)[pos + 4 : end]))
            pos = end
            if one_frame:
                break
        if pos:
            del buf[:pos]
        return out

    def pending(self) -> int:
        """Bytes received of a frame not yet complete."""
        return len(self._buf)
