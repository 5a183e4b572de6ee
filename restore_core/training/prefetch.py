"""Batches drawn ahead of the training loop by worker processes.

:meth:`PatchSampler.batch` is a pure function of ``(seed, step, rank)``, so any
process can draw any batch and the result is the same. On a GPU the Python loop
that crops, flips and degrades patches becomes the bottleneck long before the
model does (one core feeds a card that could take ten times as many patches);
:class:`BatchPrefetcher` hands the next steps' batches to a pool of forked
workers and returns them in step order. A run with workers draws exactly the
batches of a run without: ``--workers`` changes speed, never results.

The workers are forked (they inherit the sampler and its decoded images without
copying them through a pipe) and touch NumPy and OpenCV only, never torch or
CUDA, which is what makes forking a process that holds a CUDA context safe. They call
no thread-pool setup either: ``cv2.setNumThreads`` in a child forked after OpenCV's pool
started waits forever on a lock the fork copied (seen in the test suite), while OpenCV's
and NumPy's ordinary calls run fine there.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from multiprocessing.pool import AsyncResult

import numpy as np

from restore_core.training.data import PatchSampler

_worker_sampler: PatchSampler | None = None


def _init_worker(sampler: PatchSampler) -> None:
    global _worker_sampler
    _worker_sampler = sampler
    # A process group of its own: a signal meant for the run (Ctrl-C, `timeout`, a
    # scheduler's SIGTERM to the group) reaches the main process alone, which then
    # finishes its step, checkpoints and closes the pool. Workers whose parent dies
    # outright see their task pipe close and exit.
    os.setpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _draw(seed: int, step: int, batch_size: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    assert _worker_sampler is not None
    return _worker_sampler.batch(seed, step, batch_size, rank)


class BatchPrefetcher:
    """Draws batches ``first_step, first_step + 1, ...`` in ``workers`` processes,
    keeping ``depth`` of them in flight (default: two per worker), so memory stays
    bounded whatever the model's speed. Use as a context manager; :meth:`batch`
    must be asked for the steps in order."""

    timeout = 600.0  # seconds to wait for one batch before calling the workers lost

    def __init__(self, sampler: PatchSampler, seed: int, batch_size: int, rank: int, first_step: int, workers: int, depth: int = 0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.seed, self.batch_size, self.rank = seed, batch_size, rank
        self.depth = depth or 2 * workers
        self._next = first_step
        self._pending: deque[tuple[int, AsyncResult]] = deque()
        self._pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(sampler,))

    def _fill(self) -> None:
        while len(self._pending) < self.depth:
            result = self._pool.apply_async(_draw, (self.seed, self._next, self.batch_size, self.rank))
            self._pending.append((self._next, result))
            self._next += 1

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step`` (the next one in order)."""
        self._fill()
        drawn_step, result = self._pending.popleft()
        if drawn_step != step:
            raise RuntimeError(f"batches must be asked for in order: expected step {drawn_step}, got {step}")
        try:
            batch = result.get(timeout=self.timeout)
        except multiprocessing.TimeoutError:
            raise RuntimeError(f"no training batch from the data workers in {self.timeout:g} s (a worker killed?); "
                               "the last checkpoint is intact: resume, or run with --workers 0") from None
        self._fill()
        return batch

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
