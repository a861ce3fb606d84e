"""Where trials run: in this process, in a local process pool, or as Ray tasks (any Ray cluster). Each runs
the same `run_trial`; each result is handed to `done(index, result)` as soon as it arrives (the stage caches it
then, so a killed search keeps the trials it finished)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from tqdm.auto import tqdm

from quantpipe.errors import QuantpipeError

Done = Callable[[int, dict], None]


def run_local(fn: Callable, jobs: list[tuple], workers: int, done: Done, desc: str) -> None:
    if workers == 1:
        for i, job in enumerate(tqdm(jobs, desc=desc, unit="trial")):
            done(i, fn(*job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a forked child would inherit ONNX Runtime's and torch's thread pools
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="trial"):
            done(futures[future], future.result())


def run_ray(
    fn: Callable, jobs: list[tuple], workers: int, done: Done, desc: str, address: str | None, threads: int
) -> None:
    """Each trial a Ray task of `threads` CPUs; `address` null starts a local instance of `workers` tasks, every
    process of it listening on loopback only (by default they listen on every interface of the machine)."""
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise QuantpipeError("search.executor: ray is not installed (pip install 'quantpipe[ray]')") from None
    if not address:  # Ray's "local only" switch, else ray.init turns the loopback node address into a reachable
        # one: for this process (whenever it imported ray) and for the processes Ray starts (read at their import)
        ray_constants.ENABLE_RAY_CLUSTER = False
        os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:  # `auto` with no cluster on this machine
                raise QuantpipeError(f"search.ray_address: {address}: {exc}") from None
        else:
            ray.init(
                num_cpus=workers * threads, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1"
            )
    task = ray.remote(num_cpus=threads)(fn)
    index = {task.remote(*job): i for i, job in enumerate(jobs)}
    pending = list(index)
    with tqdm(total=len(pending), desc=desc, unit="trial") as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(index[ref], ray.get(ref))
            bar.update(len(ready))


def check_ray_address(address: str, where: str, timeout: float = 5.0) -> None:
    """Raise one line, within `timeout` seconds, when nothing accepts a TCP connection at a `host:port` (or
    `ray://host:port`) Ray address (the params schema checked its form): `ray.init` would retry for many minutes.
    `auto` is left to `ray.init`."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise QuantpipeError(f"{where}: {address}: no Ray cluster answers there ({why})") from None


def run_trials(fn: Callable, jobs: list[tuple], search, threads: int, done: Done, desc: str = "trials") -> None:
    """`fn(*job)` for every job, on the executor `search.executor` names, `search.workers` at a time."""
    if not jobs:
        return
    if search.executor == "ray":
        run_ray(fn, jobs, search.workers, done, desc, search.ray_address, threads)
    else:
        run_local(fn, jobs, search.workers, done, desc)
