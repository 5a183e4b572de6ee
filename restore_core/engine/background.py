"""Work beside the model, in background threads, for files read and written as a stream
of frames or pages: :class:`Prefetched` decodes ahead, :class:`WriteBehind` encodes
behind. The model keeps the calling thread (and the GPU) busy meanwhile; with a cheap
model (a GPU's) decoding and encoding were otherwise as long as restoring."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

_END = object()


class Prefetched:
    """Items of ``source`` produced ``depth`` ahead in a background thread (the
    decoder); its errors are raised to the consumer. :meth:`close` stops and joins the
    thread, so the file can be closed under it safely."""

    def __init__(self, source: Iterator, depth: int, name: str = "restore-read") -> None:
        self._slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, source: Iterator) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            item = self._slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class WriteBehind:
    """Items handed to ``consume`` (a function that takes an iterator of them, the writer
    of one file) in a background thread, in the order :meth:`put` gives them. ``put``
    waits while ``depth`` items wait; an error of ``consume`` is raised by the next
    ``put`` or by :meth:`finish`. :meth:`abandon` ends the iterator early and waits for
    ``consume`` to return, whatever it raises then."""

    def __init__(self, consume: Callable[[Iterator], None], depth: int = 2, name: str = "restore-write") -> None:
        self._slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._failure: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._consume, args=(consume,), name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator:
        while (item := self._slots.get()) is not _END:
            yield item

    def _consume(self, consume: Callable[[Iterator], None]) -> None:
        try:
            consume(self._items())
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            self._failure = exc
        finally:
            self._done.set()

    def _hand(self, item: object) -> None:
        while not self._done.is_set():
            try:
                self._slots.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def put(self, item: object) -> None:
        """Hand ``item`` to the writer; raises what the writer raised, if it failed."""
        self._hand(item)
        if self._failure is not None:
            raise self._failure

    def finish(self) -> None:
        """Wait for every item to be consumed; raises what the writer raised."""
        self._hand(_END)
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def abandon(self) -> None:
        """Stop: the writer's iterator ends here, and its failure, if any, is ignored."""
        self._hand(_END)
        self._thread.join()
