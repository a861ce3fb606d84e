"""Where trials run: in this process, in a local process pool, or as Ray tasks (any Ray cluster). Each runs
the same `run_trial`; results come back here in the order asked, and the stage writes them."""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

from quantpipe.errors import QuantpipeError


def run_local(fn: Callable, jobs: list[tuple], workers: int, desc: str) -> list[dict]:
    if workers == 1:
        return [fn(*job) for job in tqdm(jobs, desc=desc, unit="trial")]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a forked child would inherit ONNX Runtime's and torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in tqdm(futures, desc=desc, unit="trial")]


def run_ray(fn: Callable, jobs: list[tuple], workers: int, desc: str, address: str | None, threads: int) -> list[dict]:
    """Each trial a Ray task of `threads` CPUs; `address` null starts a local instance of `workers` tasks."""
    try:
        import ray
    except ImportError:
        raise QuantpipeError("search.executor: ray is not installed (pip install 'quantpipe[ray]')") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers * threads, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=threads)(fn)
    refs = [task.remote(*job) for job in jobs]
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, unit="trial") as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            bar.update(len(ready))
    return ray.get(refs)


def run_trials(fn: Callable, jobs: list[tuple], search, threads: int, desc: str = "trials") -> list[dict]:
    """`fn(*job)` for every job, on the executor `search.executor` names, `search.workers` at a time."""
    if not jobs:
        return []
    if search.executor == "ray":
        return run_ray(fn, jobs, search.workers, desc, search.ray_address, threads)
    return run_local(fn, jobs, search.workers, desc)
