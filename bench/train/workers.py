"""Worker processes that die with their parent, and slots that survive a killed worker.

Shared by ``bench run --workers N`` (folds in parallel, :mod:`bench.train.runner`) and
``bench sweep`` (run keys in parallel, :mod:`bench.train.sweep`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the sweep process dies (no orphan keeps training)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the sweep's SIGTERM handler still terminates the pool


def run_slots(chunks: Sequence[Sequence[Any]], n_slots: int, start: Callable[[int], ProcessPoolExecutor],
              fn: Callable[[Any], Any], on_done: Callable[[Any, Any], None], on_lost: Callable[[Any], None]) -> None:
    """Run every task of ``chunks`` through ``fn`` on ``n_slots`` single-process executors ("slots").

    A slot takes a chunk and runs its tasks one at a time, in order, so its worker keeps what it loaded
    for the previous task (a cohort's features). ``on_done(task, result)`` is called as each finishes.
    multiprocessing.Pool never notices a worker killed by a signal (it waits forever for the lost task);
    a ProcessPoolExecutor notices but fails every task it holds. One executor per slot confines the
    loss to the task the dead worker was running: ``on_lost(task)`` reports it, the slot gets a fresh
    executor from ``start(slot)`` and goes on with the rest. An exception raised by ``fn`` propagates;
    on any exit other than a normal end the workers are terminated.
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = [list(c) for c in chunks if c]
    executors: list[ProcessPoolExecutor] = []
    queues: list[list[Any]] = []
    running: dict[Any, tuple[int, Any]] = {}

    def feed(slot: int) -> None:
        if not queues[slot] and pending:
            queues[slot] = pending.pop(0)
        if queues[slot]:
            task = queues[slot].pop(0)
            running[executors[slot].submit(fn, task)] = (slot, task)

    finished = False
    try:
        for slot in range(min(n_slots, len(pending))):
            executors.append(start(slot))
            queues.append([])
            feed(slot)
        while running:
            done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                slot, task = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    _stop_executor(executors[slot], kill=True)
                    executors[slot] = start(slot)
                    on_lost(task)
                else:
                    on_done(task, result)
                feed(slot)
        finished = True
    finally:
        for ex in executors:
            _stop_executor(ex, kill=not finished)


def _stop_executor(ex: ProcessPoolExecutor, kill: bool) -> None:
    if kill:
        # ProcessPoolExecutor has no public way to stop a running task before Python 3.14
        for p in list((getattr(ex, "_processes", None) or {}).values()):
            if p.is_alive():
                p.terminate()
    ex.shutdown(wait=True, cancel_futures=True)
