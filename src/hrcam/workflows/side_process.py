"""One worker process beside this one, for independent jobs of a long workflow (the demo's extras).

    side = SideProcess(threads=1)
    future = side.submit(fn, *args)     # a module-level function and picklable arguments
    side.idle()                         # True once everything submitted has finished
    side.shutdown()

The worker is spawned (no forked torch state) and gets ``threads`` torch threads. Like any
spawned process it imports the calling script again, so a script needs the usual
``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

__all__ = ["SideProcess", "free_cores"]


def free_cores() -> int:
    """CPUs this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class SideProcess:
    """A one-process pool that knows whether it is busy."""

    def __init__(self, threads: int = 1):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_set_threads, initargs=(int(threads),))
        self._futures: list = []

    def submit(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` there (after what was submitted before); its Future."""
        future = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def idle(self) -> bool:
        """Whether every job submitted so far has finished (so a new one would start at once)."""
        return all(f.done() for f in self._futures)

    def shutdown(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
