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

Each worker has pipes of its own and draws every ``workers``-th step, so no lock is
shared between processes. (``multiprocessing.Pool`` shares its queues' locks, and its
``terminate`` could wait forever on a lock held by a worker blocked writing a batch that
nobody would read any more: a test-suite run hung there at the end of a training run.)
Closing kills the workers; nothing of theirs is needed any more.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection

import numpy as np

from restore_core.training.data import PatchSampler


def _worker(sampler: PatchSampler, tasks: Connection, results: Connection) -> None:
    """Draw the batch of every step received on ``tasks`` until it closes (or says None)."""
    # A process group of its own: a signal meant for the run (Ctrl-C, `timeout`, a
    # scheduler's SIGTERM to the group) reaches the main process alone, which then
    # finishes its step, checkpoints and closes the workers. Workers whose parent dies
    # outright see their task pipe close and exit.
    os.setpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while True:
        try:
            task = tasks.recv()
        except EOFError:
            return
        if task is None:
            return
        seed, step, batch_size, rank = task
        results.send(sampler.batch(seed, step, batch_size, rank))


class BatchPrefetcher:
    """Draws batches ``first_step, first_step + 1, ...`` in ``workers`` processes,
    keeping ``depth`` of them in flight (default: two per worker), so memory stays
    bounded whatever the model's speed. Use as a context manager; :meth:`batch`
    must be asked for the steps in order. Worker ``i`` draws the steps with
    ``(step - first_step) % workers == i``, so each result pipe holds its worker's
    batches in step order."""

    timeout = 600.0  # seconds to wait for one batch before calling the workers lost

    def __init__(self, sampler: PatchSampler, seed: int, batch_size: int, rank: int, first_step: int, workers: int, depth: int = 0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.seed, self.batch_size, self.rank = seed, batch_size, rank
        self.depth = depth or 2 * workers
        self._first = first_step
        self._next = first_step  # the next step to hand out
        self._wanted = first_step  # the next step batch() must be asked for
        context = multiprocessing.get_context("fork")
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._processes = []
        for _ in range(workers):
            task_reader, task_writer = context.Pipe(duplex=False)
            result_reader, result_writer = context.Pipe(duplex=False)
            process = context.Process(target=_worker, args=(sampler, task_reader, result_writer), daemon=True)
            process.start()
            task_reader.close()
            result_writer.close()
            self._tasks.append(task_writer)
            self._results.append(result_reader)
            self._processes.append(process)

    def _worker_of(self, step: int) -> int:
        return (step - self._first) % len(self._processes)

    def _fill(self) -> None:
        while self._next - self._wanted < self.depth:
            self._tasks[self._worker_of(self._next)].send((self.seed, self._next, self.batch_size, self.rank))
            self._next += 1

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step`` (the next one in order)."""
        if step != self._wanted:
            raise RuntimeError(f"batches must be asked for in order: expected step {self._wanted}, got {step}")
        results = self._results[self._worker_of(step)]
        try:  # a dead worker shows as a closed pipe (EOFError, BrokenPipeError) or silence
            self._fill()
            if not results.poll(self.timeout):
                raise EOFError
            batch = results.recv()
            self._wanted += 1
            self._fill()
        except (EOFError, OSError):
            raise RuntimeError(f"no training batch from the data workers in {self.timeout:g} s (a worker killed?); "
                               "the last checkpoint is intact: resume, or run with --workers 0") from None
        return batch

    def close(self) -> None:
        for process in self._processes:
            process.kill()
        for process in self._processes:
            process.join()
        for connection in self._tasks + self._results:
            connection.close()
        self._processes = []

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
