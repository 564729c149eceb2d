"""rayling.util helpers as Ray 2.60 documents them: as_completed, map_unordered,
get_node_ip_address, list_named_actors, inspect_serializability."""

from __future__ import annotations

import io
import os
import threading

import pytest

import rayling
from rayling.util import (
    as_completed,
    get_node_ip_address,
    inspect_serializability,
    list_named_actors,
    map_unordered,
)

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@rayling.remote
def after(path: str | None, x):
    """Returns ``x`` once ``path`` exists (at once if no path)."""
    import time

    while path and not os.path.exists(path):
        time.sleep(0.01)
    return x


def test_as_completed_yields_what_is_done_first(shared_cluster, tmp_path):
    gate = str(tmp_path / "gate")
    refs = [after.remote(gate, "slow")] + [after.remote(None, i) for i in range(5)]
    results = as_completed(refs, chunk_size=1)
    assert sorted(next(results) for _ in range(5)) == list(range(5))  # not the gated one
    open(gate, "w").close()
    assert list(results) == ["slow"]
    refs = [after.remote(None, i) for i in range(7)]
    got = list(as_completed(refs, chunk_size=3, yield_obj_refs=True))
    assert sorted(rayling.get(got)) == list(range(7)) and all(
        isinstance(r, rayling.ObjectRef) for r in got)
    with pytest.raises(ValueError, match="chunk_size"):
        next(as_completed(refs, chunk_size=0))


def test_map_unordered_keeps_at_most_backpressure_size_in_flight(shared_cluster):
    pulled = []

    def items():
        for i in range(20):
            pulled.append(i)
            yield i

    @rayling.remote
    def square(x):
        return x * x

    results = map_unordered(square, items(), backpressure_size=4, chunk_size=1)
    first = next(results)
    assert first in {x * x for x in range(5)} and len(pulled) <= 5
    assert sorted([first, *results]) == [x * x for x in range(20)]
    refs = list(map_unordered(square, range(5), backpressure_size=None, yield_obj_refs=True))
    assert sorted(rayling.get(refs)) == [0, 1, 4, 9, 16]


def test_get_node_ip_address_is_this_nodes(shared_cluster):
    assert get_node_ip_address() == rayling.nodes()[0]["NodeManagerAddress"]

    @rayling.remote
    def inside():
        return get_node_ip_address()

    assert rayling.get(inside.remote()) == get_node_ip_address()


def test_list_named_actors(shared_cluster):
    @rayling.remote
    class Named:
        def ping(self):
            return 1

    a = Named.options(name="alpha").remote()
    b = Named.options(name="beta", namespace="elsewhere").remote()
    anonymous = Named.remote()
    rayling.get([a.ping.remote(), b.ping.remote(), anonymous.ping.remote()])
    assert "alpha" in list_named_actors() and "beta" not in list_named_actors()
    everywhere = list_named_actors(all_namespaces=True)
    assert {"name": "beta", "namespace": "elsewhere"} in everywhere
    assert any(entry["name"] == "alpha" for entry in everywhere)
    rayling.kill(a)
    wait_until(lambda: "alpha" not in list_named_actors(), what="a killed actor to go")


def test_inspect_serializability_finds_the_member_that_does_not_pickle():
    lock = threading.Lock()

    def uses_a_lock():
        with lock:
            return 1

    out = io.StringIO()
    ok, failures = inspect_serializability(uses_a_lock, print_file=out)
    assert not ok and [f[1] for f in failures] == ["lock"] and failures.pop()[0] is lock
    assert "lock" in out.getvalue() and "does not pickle" in out.getvalue()
    ok, failures = inspect_serializability(lambda x: x + 1, name="adder", print_file=out)
    assert ok and not failures and "adder is serializable" in out.getvalue()
