"""The client's core, without sockets or threads: ref counting, batching, arrivals,
actor-call routing and pending requests."""

from __future__ import annotations

import threading

from rayling._private import protocol as p
from rayling._private.client_core import (
    OUTBOX_MAX,
    ActorRoutes,
    Arrivals,
    Outbox,
    RefCounter,
    Requests,
)

A, B = b"a" * 28, b"b" * 28


def test_the_daemon_hears_only_of_first_and_last_refs():
    refs = RefCounter()
    assert refs.created(A, born=False) is True
    assert refs.created(A, born=False) is False  # a second ref to A: nothing to say
    assert refs.created(B, born=True) is False  # our own put or task: already counted
    refs.dropped(A)
    assert refs.take_changes() == ([A], [])  # one ref to A is left
    refs.dropped(A)
    refs.dropped(B)
    assert refs.take_changes() == ([], [A, B])
    refs.dropped(A)  # a stray drop of an id no longer held changes nothing
    assert refs.take_changes() == ([], []) and not refs.has_changes()


def test_drops_may_come_from_any_thread():
    refs = RefCounter()
    for _ in range(4000):
        refs.created(A, born=True)
    threads = [threading.Thread(target=lambda: [refs.dropped(A) for _ in range(1000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refs.take_changes() == ([], [A]) and A not in refs.counts


def test_the_outbox_sends_a_functions_code_once_before_its_first_task():
    outbox = Outbox()
    submit = p.SubmitTask(b"t", b"f", "f", b"", [], [], 1, {}, 0)
    outbox.register(b"f", b"code", "f")
    outbox.queue([submit])
    outbox.register(b"f", b"code", "f")
    outbox.queue([submit])
    batch = outbox.take()
    assert [type(m) for m in batch] == [p.RegisterFunction, p.SubmitTask, p.SubmitTask]
    assert outbox.take() == [] and not outbox.urgent


def test_the_outbox_says_when_a_batch_is_full_and_what_is_urgent():
    outbox = Outbox()
    outbox.queue([p.Heartbeat()], urgent=False)
    assert not outbox.urgent
    assert not outbox.queue([p.Heartbeat()] * (OUTBOX_MAX - 2))
    assert outbox.urgent and outbox.queue([p.Heartbeat()])


def test_a_wait_wakes_when_enough_objects_arrived():
    arrivals = Arrivals()
    arrivals.own_pending.add(A)
    waiter, missing, ask = arrivals.plan_wait([A, B], num_ready=2)
    assert missing == [A, B] and ask == [B]  # the result of our own task comes unasked
    arrivals.arrived(A, p.ObjectData(inline=b"1"))
    assert waiter.needed == 1 and A not in arrivals.own_pending
    arrivals.arrived(B, p.ObjectData(inline=b"2"))
    waiter.wait(timeout=0)  # woken: returns at once
    assert arrivals.plan_wait([A, B], num_ready=2) == (None, [], [])
    arrivals.forget(A)
    assert A not in arrivals.objects


def test_a_timed_out_wait_leaves_no_waiter_behind():
    arrivals = Arrivals()
    waiter, missing, _ = arrivals.plan_wait([A], num_ready=1)
    arrivals.stop_waiting(waiter, missing)
    arrivals.arrived(A, p.ObjectData(inline=b"1"))
    assert waiter.needed == 1  # nobody counted it down


def test_calls_switch_to_the_direct_path_only_when_none_is_unfinished():
    routes = ActorRoutes()
    actor = b"x" * 16
    assert routes.route(actor) == (None, True)  # ask where it listens, once
    routes.called(actor, A, direct=False, keep="ref-a")
    assert routes.route(actor) == (None, False)
    routes.answered(actor, {"path": "/s", "worker_id": b"w", "node_id": b"n"})
    assert routes.route(actor) == (None, False)  # A is still due via the daemon
    routes.finished(A)
    assert routes.route(actor) == (("/s", b"w", b"n"), False)
    routes.called(actor, B, direct=True, keep="ref-b")
    routes.unreachable(actor)  # B's result now comes via the daemon; ask again where
    assert routes.route(actor) == (None, True)  # the actor is (it may have restarted)
    routes.answered(actor, {"path": "/t", "worker_id": b"v", "node_id": b"n"})
    assert routes.route(actor) == (None, False)  # B is still due via the daemon
    routes.finished(B)
    assert routes.route(actor) == (("/t", b"v", b"n"), False)


def test_requests_complete_their_own_slot_and_are_abandoned_at_disconnect():
    requests = Requests()
    first, second = requests.new("slot-1"), requests.new("slot-2")
    assert requests.answered(p.Reply(second, None)) == "slot-2"
    assert requests.answered(p.Reply(second, None)) is None
    assert requests.abandon_all() == ["slot-1"]
    assert first != second
