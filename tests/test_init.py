"""init/shutdown and cases that need a cluster of their own."""

from __future__ import annotations

import os

import pytest

import rayling as ray

pytestmark = pytest.mark.timeout(60)


@ray.remote
def square(x):
    return x * x


def test_function_failing_to_import_on_worker(tmp_path, monkeypatch):
    (tmp_path / "fragile_mod.py").write_text(
        "import os\n"
        "if os.environ.get('RAYLING_WORKER'):\n"
        "    raise ImportError('fragile_mod cannot be imported on workers')\n"
        "VALUE = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import fragile_mod

    ray.init(num_cpus=1)
    try:
        @ray.remote
        def uses_module():
            return fragile_mod.VALUE

        with pytest.raises(ImportError, match="cannot be imported on workers"):
            ray.get(uses_module.remote())
    finally:
        ray.shutdown()


def test_implicit_init_and_reinit_errors():
    assert not ray.is_initialized()
    assert ray.get(square.remote(4)) == 16  # the first .remote() starts a cluster
    assert ray.is_initialized()
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        ray.init()
    ray.init(ignore_reinit_error=True)
    ray.shutdown()
    assert not ray.is_initialized()


def test_init_options_are_accepted():
    ctx = ray.init(num_cpus=1, num_gpus=0, resources={"special": 2}, object_store_memory=10**8,
                   configure_logging=False, logging_level="ERROR", log_to_driver=False,
                   _system_config={"automatic_object_spilling_enabled": False})
    try:
        resources = ray.cluster_resources()
        assert resources["CPU"] == 1.0 and resources["special"] == 2.0
        # And those every Ray node has.
        assert resources["memory"] >= 0 and resources["object_store_memory"] > 0
        assert resources["node:__internal_head__"] == 1.0
        assert resources[f"node:{ray.nodes()[0]['NodeManagerAddress']}"] == 1.0
        assert ctx.node_id == ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_cpu'"):
        ray.init(num_cpu=1)


def test_shutdown_removes_session_and_processes():
    import psutil

    ctx = ray.init(num_cpus=1)
    session_dir = ctx.session_dir
    children = psutil.Process().children(recursive=True)
    assert children
    ray.shutdown()
    assert not os.path.exists(session_dir)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_killed_driver_leaves_nothing_behind(tmp_path):
    import signal
    import subprocess
    import sys

    import psutil

    from .conftest import wait_until

    script = tmp_path / "driver.py"
    script.write_text(
        "import sys, numpy as np, rayling as ray\n"
        "ctx = ray.init(num_cpus=2)\n"
        "keep = ray.put(np.ones(10_000_000))\n"
        "@ray.remote\n"
        "def f(): return 1\n"
        "ray.get([f.remote() for _ in range(4)])\n"
        "print(ctx.session_dir, flush=True)\n"
        "sys.stdin.read()\n"
    )
    driver = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    session_dir = driver.stdout.readline().strip()
    session = os.path.basename(session_dir).split("_")[1]
    started = psutil.Process(driver.pid).children(recursive=True)
    assert len(started) >= 3  # daemon, template, workers
    assert any(f.startswith(f"rl{session}_") for f in os.listdir("/dev/shm"))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, f"still running after the driver was killed: {alive}"
    wait_until(lambda: not os.path.exists(session_dir), what="the session directory to go")
    assert not any(f.startswith(f"rl{session}_") for f in os.listdir("/dev/shm"))


def test_daemon_death_fails_waiters_instead_of_hanging():
    import signal

    import psutil

    from rayling import exceptions as exc

    from .conftest import wait_until

    ray.init(num_cpus=1)
    try:
        @ray.remote
        def forever():
            import time

            time.sleep(600)

        ref = forever.remote()
        daemon = next(p for p in psutil.Process().children()
                      if "rayling._private.daemon" in " ".join(p.cmdline()))
        workers = daemon.children(recursive=True)
        daemon.send_signal(signal.SIGKILL)
        with pytest.raises(exc.RaySystemError, match="daemon"):
            ray.get(ref, timeout=30)
        wait_until(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE
                                   for w in workers), what="workers to exit")
    finally:
        ray.shutdown()


def test_await_and_future_on_refs():
    import asyncio

    ray.init(num_cpus=1)
    try:
        ref = square.remote(6)
        assert ref.future().result(timeout=30) == 36

        async def main():
            return await square.remote(7)

        assert asyncio.run(main()) == 49
    finally:
        ray.shutdown()


def test_refs_outliving_their_session_are_harmless():
    import gc

    from rayling._private import client as client_mod

    ray.init(num_cpus=1)
    old = [ray.put(i) for i in range(50)]
    old_client = client_mod.current
    ray.shutdown()
    old_client._flush_armed = False  # as if no wake-up were pending when it closed
    ray.init(num_cpus=1)
    try:
        for _ in range(3):
            refs = [square.remote(i) for i in range(20)]
            old.pop()  # dropping a ref of the old session must not touch the new one
            gc.collect()
            assert ray.get(refs, timeout=30) == [i * i for i in range(20)]
        del old
        assert ray.get(square.remote(3), timeout=30) == 9
    finally:
        ray.shutdown()


def test_init_returns_a_context_as_rays(tmp_path):
    import platform

    import rayling

    with rayling.init(num_cpus=1) as context:
        assert context.address_info["node_ip_address"] == "127.0.0.1"
        assert context.address_info["session_dir"] == context["session_dir"]
        assert context.address_info["gcs_address"] == context.address_info["address"]
        assert context.address_info["node_id"] == rayling.get_runtime_context().get_node_id()
        assert context["webui_url"] == context.dashboard_url == rayling.get_dashboard_url()
        assert context.python_version == platform.python_version()
        assert "rayling" in context.ray_version
        assert repr(context).startswith("RayContext(dashboard_url=")
    assert not rayling.is_initialized()  # (the with block shut it down)
