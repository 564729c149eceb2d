"""What the cluster looks like, read from the controller's parts: the answers to Query
messages (nodes, resources, named actors, store and pool counters). No state of its own."""

from __future__ import annotations

from . import protocol as p, state_tables, task_events


def answer(controller, what: p.QueryKind):
    """The value a Query for ``what`` gets (raises ValueError for an unknown kind)."""
    kind = type(what)
    nodes, actors = controller.nodes, controller.actors
    if kind is p.ClusterNodes:
        return [node.info() for node in nodes.all]
    if kind is p.ClusterResources:
        return _sum(n.pool.total_float() for n in nodes.live())
    if kind is p.AvailableResources:
        free = _sum(n.pool.free_float() for n in nodes.live())
        return {k: v for k, v in free.items() if v > 0}
    if kind is p.NamedActor:
        actor = actors.named_actor(what.namespace, what.name)
        return actor.info() if actor is not None else None
    if kind is p.ActorList:
        return [a.info() for a in actors.actors.values()]
    if kind is p.PlacementGroupInfo:
        return controller.groups.info(what)
    if kind is p.PlacementGroupTable:
        return controller.groups.table()
    if kind is p.TaskSummary:
        return task_events.summary(controller.events, list(controller.tasks.tasks.values()))
    if kind is p.UserMetricRows:
        return controller.metrics.rows()
    if kind is p.StateRows:
        return state_tables.rows(controller, what.kind, what.filters, what.limit)
    if kind is p.JobNamespace:
        return controller.jobs.namespaces.get(what.job_id)
    if kind is p.StoreStats:
        workers = controller.workers.by_conn.values()
        return {
            **controller.objects.stats(),
            "workers": len(workers),
            "idle_workers": sum(len(n.workers.idle) for n in nodes.all),
            "tasks": len(controller.tasks),
            "worker_pids": [w.pid for w in workers],
        }
    raise ValueError(f"unknown query {what!r}")


def _sum(dicts) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total
