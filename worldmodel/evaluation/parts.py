"""The evaluation's independent parts run side by side: the place walks (in two groups) and the revisits go to worker
processes while the main process dreams and scores the open loop.

Most of a memory-on dream tick is single-threaded work (the scene memory's numpy and its llvmpipe rasterizer), and
the dynamics' matrices at these batch sizes gain little from a second thread, so on 2 cores two processes of one
thread each finish the evaluation sooner than one process of two threads. Each part is a function of plain
arguments that loads the model itself; its result is a dict merged into the report (`merge`). With `workers` 1 the
parts run one after another in the calling process, after the open loop (as before this module).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Iterator

# the place walks, in groups of about equal time (the long play needs the long walks' reference frames: one group)
PLACE_GROUPS = (("long_walk", "long_play"),
                ("turn_360", "out_and_back", "look_up_down", "idle", "wall", "dream_revisit"))


def default_workers(device: str) -> int:
    """Processes for the parts on a CPU of at least 2 cores: one per part (the two place groups and the revisits), so
    that none waits for another and the longest part alone sets the time; else 1 (a GPU runs the dreams itself)."""
    return 3 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def _run(name: str, kwargs: dict[str, Any], threads: int | None) -> tuple[dict[str, Any], float]:
    """One part in this process: (its result, its wall time in s). `threads`: torch's intra-op threads for it."""
    import torch

    from worldmodel.evaluation.places import place_benchmarks
    from worldmodel.evaluation.revisits import recorded_revisit, revisit

    if threads is not None:
        torch.set_num_threads(threads)
    fn = {"places": place_benchmarks, "revisit": revisit, "recorded_revisit": recorded_revisit}[name]
    t0 = time.perf_counter()
    result = fn(**kwargs)
    return result, round(time.perf_counter() - t0, 1)


class Parts:
    """Parts submitted now and collected later (`results`, in the order submitted): in `workers` spawned processes
    of one torch thread each when workers > 1 (started at the first submit), else run in this process when
    collected."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: list[tuple[str, Future | dict[str, Any]]] = []

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    @property
    def running(self) -> bool:
        """Whether worker processes have been started (a part was submitted with workers > 1)."""
        return self._pool is not None

    def submit(self, name: str, **kwargs: Any) -> None:
        if not self.parallel:
            self._jobs.append((name, kwargs))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        self._jobs.append((name, self._pool.submit(_run, name, kwargs, 1)))

    def results(self) -> Iterator[tuple[str, dict[str, Any], float]]:
        """(name, result, wall s) of every part; a part's exception is raised here, in the caller's process."""
        for name, job in self._jobs:
            result, wall = job.result() if isinstance(job, Future) else _run(name, job, None)
            yield name, result, wall

    def close(self, abort: bool = False) -> None:
        """Stop the workers: after their parts, or at once with `abort` (an error or Ctrl-C in the caller: the
        other parts' results would be thrown away anyway)."""
        if self._pool is None:
            return
        if abort:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


def merge(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """`part`'s keys into `into`, dicts merged key by key (recursively), anything else replaced."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into
