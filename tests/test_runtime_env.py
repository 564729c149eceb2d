"""runtime_env={"env_vars": ...} on a task, an actor, and the job (init): the code runs
with exactly those variables, nested tasks inherit them, other tasks never see them.
Other runtime_env parts raise NotImplementedError naming themselves."""

from __future__ import annotations

import os
import subprocess

import pytest

import rayling

pytestmark = pytest.mark.timeout(60)


@rayling.remote
def read(name):
    return os.environ.get(name), subprocess.run(
        ["sh", "-c", f"echo ${name}"], capture_output=True, text=True).stdout.strip()


@rayling.remote
def nested(name):
    return rayling.get(read.remote(name))[0]


@rayling.remote
class Holder:
    def read(self, name):
        return os.environ.get(name)


def test_env_vars_for_tasks_actors_and_the_job():
    rayling.init(num_cpus=1, runtime_env={"env_vars": {"JOB_VAR": "job"}})
    try:
        with_env = read.options(runtime_env={"env_vars": {"TASK_VAR": "set"}})
        assert rayling.get(with_env.remote("TASK_VAR")) == ("set", "set")
        # The next task on the same (only) worker does not see it; every task sees the job's.
        assert rayling.get(read.remote("TASK_VAR")) == (None, "")
        assert rayling.get(read.remote("JOB_VAR")) == ("job", "job")
        # Nested tasks inherit their parent's; a task's own value wins over the job's.
        inner = nested.options(runtime_env={"env_vars": {"TASK_VAR": "outer"}})
        assert rayling.get(inner.remote("TASK_VAR")) == "outer"
        assert rayling.get(read.options(runtime_env={"env_vars": {"JOB_VAR": "mine"}})
                           .remote("JOB_VAR"))[0] == "mine"
        actor = Holder.options(num_cpus=0, runtime_env={"env_vars": {"ACTOR_VAR": "a"}}).remote()
        assert rayling.get([actor.read.remote("ACTOR_VAR"), actor.read.remote("JOB_VAR")]) == [
            "a", "job"]
        assert rayling.get(read.remote("ACTOR_VAR"))[0] is None
    finally:
        rayling.shutdown()


def test_runtime_env_parts_not_built_say_so():
    with pytest.raises(NotImplementedError, match="pip"):
        read.options(runtime_env={"pip": ["requests"]})
    with pytest.raises(NotImplementedError, match="working_dir"):
        rayling.init(runtime_env={"working_dir": "."})
    with pytest.raises(TypeError, match="env_vars"):
        read.options(runtime_env={"env_vars": {"X": 1}})
