"""A joblib backend that runs ``Parallel`` jobs on the cluster: after ``register_ray()``,
``with joblib.parallel_backend("ray"): Parallel(n_jobs=-1)(delayed(f)(x) for x in xs)``
(scikit-learn's ``n_jobs`` included) runs on a ``rayling.util.multiprocessing.Pool``.
joblib is an optional dependency (``pip install joblib``)."""

from __future__ import annotations

from .. import api
from .multiprocessing import Pool

try:
    import joblib
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        ParallelBackendBase,
        PoolManagerMixin,
    )
except ImportError as e:  # pragma: no cover - joblib is optional
    raise ImportError("rayling.util.joblib needs joblib: pip install joblib") from e

__all__ = ["RaylingBackend", "register_ray"]


class RaylingBackend(AutoBatchingMixin, PoolManagerMixin, ParallelBackendBase):
    """joblib's batches run on a Pool of actors, one per job slot. Backend arguments:
    ``ray_remote_args`` (the actors' options)."""

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            if not api.is_initialized():
                api.init()
            cpus = int(api.cluster_resources().get("CPU", 1))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        remote_args = {**self.backend_kwargs, **kwargs}.get("ray_remote_args")
        self._pool = Pool(processes=n_jobs, ray_remote_args=remote_args)
        self.parallel = parallel
        return n_jobs


def register_ray() -> None:
    """Make ``"ray"`` (and ``"rayling"``) joblib backend names that run on the cluster."""
    joblib.register_parallel_backend("ray", RaylingBackend)
    joblib.register_parallel_backend("rayling", RaylingBackend)
