"""Namespaces as in Ray: a job that names none gets an anonymous one of its own, so its
named actors are invisible to other jobs; jobs that name the same namespace share them;
tasks and actors of a job make and find named actors in their job's namespace, and
get_runtime_context().namespace says which it is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import rayling
from rayling.cluster_utils import Cluster

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    yield cluster
    cluster.shutdown()


def _other_job(cluster, namespace: str | None, code: str) -> str:
    """Run ``code`` in another driver of ``cluster``; its printed output."""
    script = textwrap.dedent(f"""
        import rayling
        from tests.test_namespaces import Box
        rayling.init(address={cluster.address!r}, namespace={namespace!r})
    """) + textwrap.dedent(code)
    env = {**os.environ, "RAYLING_TOKEN": cluster._token, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@rayling.remote
class Box:
    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v

    def namespace(self):
        return rayling.get_runtime_context().namespace

    def find(self, name):
        return rayling.get(rayling.get_actor(name).get.remote())


def test_jobs_without_a_namespace_do_not_see_each_others_named_actors(cluster):
    rayling.init(address=cluster.address)
    try:
        mine = rayling.get_runtime_context().namespace
        assert mine and mine != _other_job(cluster, None, """
            print(rayling.get_runtime_context().namespace)""")
        box = Box.options(name="box", lifetime="detached").remote("anonymous")
        rayling.get(box.get.remote())
        out = _other_job(cluster, None, """
            try:
                rayling.get_actor("box")
                print("found")
            except ValueError:
                print("not found")""")
        assert out == "not found"
        # Given the namespace, another job finds it.
        out = _other_job(cluster, None, f"""
            print(rayling.get(rayling.get_actor("box", namespace={mine!r}).get.remote()))""")
        assert out == "anonymous"
        rayling.kill(box)
    finally:
        rayling.shutdown()


def test_jobs_sharing_a_namespace_share_named_actors_and_tasks_use_their_jobs(cluster):
    _other_job(cluster, "lab", """
        Box.options(name="shared", lifetime="detached").remote("from another job")""")
    rayling.init(address=cluster.address, namespace="lab")
    try:
        assert rayling.get_runtime_context().namespace == "lab"
        shared = rayling.get_actor("shared")
        assert rayling.get(shared.get.remote()) == "from another job"

        @rayling.remote
        def inside_a_task():
            ctx = rayling.get_runtime_context()
            return ctx.namespace, rayling.get(rayling.get_actor("shared").get.remote())

        assert rayling.get(inside_a_task.remote()) == ("lab", "from another job")
        finder = Box.remote(0)
        assert rayling.get(finder.namespace.remote()) == "lab"
        assert rayling.get(finder.find.remote("shared")) == "from another job"
        rayling.kill(shared)
    finally:
        rayling.shutdown()


def test_nested_tasks_of_a_later_job_use_its_namespace(cluster):
    _other_job(cluster, "first", "")  # (the cluster's first job)
    out = _other_job(cluster, "second", """
        @rayling.remote
        def inner():
            return rayling.get_runtime_context().namespace

        @rayling.remote
        def outer():
            return rayling.get(inner.remote())

        print(rayling.get(outer.remote()))""")
    assert out == "second"
