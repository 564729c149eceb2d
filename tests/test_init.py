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
        assert ray.cluster_resources() == {"CPU": 1.0, "special": 2.0}
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
