"""The engine's background threads (engine.background): decoding ahead and writing
behind the model, in order, with their errors raised in the caller's thread."""

from __future__ import annotations

import pytest

from restore_core.engine.background import Prefetched, WriteBehind


def test_write_behind_hands_every_item_over_in_order():
    received = []
    behind = WriteBehind(lambda items: received.extend(items), depth=1)
    for item in range(50):
        behind.put(item)
    behind.finish()
    assert received == list(range(50))


def test_a_writers_failure_is_raised_by_the_next_put_or_by_finish_and_never_hangs():
    def fails_at_the_third(items):
        for count, _ in enumerate(items, start=1):
            if count == 3:
                raise OSError(28, "No space left on device")

    behind = WriteBehind(fails_at_the_third, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for item in range(1000):  # the writer stopped taking items: put must not wait for it forever
            behind.put(item)
    with pytest.raises(OSError, match="No space left"):
        behind.finish()


def test_abandon_ends_the_writers_items_where_they_stand():
    received = []
    behind = WriteBehind(lambda items: received.extend(items), depth=4)
    behind.put("first")
    behind.abandon()
    assert received == ["first"]


def test_prefetched_items_come_in_order_and_the_sources_error_comes_after_them():
    def source():
        yield from range(5)
        raise ValueError("page 6 cannot be decoded")

    ahead = Prefetched(source(), depth=2)
    got = []
    with pytest.raises(ValueError, match="page 6"):
        for item in ahead:
            got.append(item)
    ahead.close()
    assert got == [0, 1, 2, 3, 4]
