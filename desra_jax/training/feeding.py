"""Host-to-device feeding: batches are prepared and transferred on a background thread, ahead of the step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from desra_jax.training.sharding import put_batch


def prefetch_to_device(make_batch: Callable[[int], dict], steps: range, mesh, size: int = 2) -> Iterator[dict]:
    """Yield `put_batch(make_batch(step), mesh)` for each step, computed `size` steps ahead on a thread.

    `make_batch(step)` returns this process's numpy slice of the global batch for that step. An exception in
    the producer is re-raised in the consumer, at the step it belongs to.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(size, 1))
    stop = threading.Event()

    def produce():
        for step in steps:
            if stop.is_set():
                return
            try:
                item = put_batch(make_batch(step), mesh)
            except Exception as error:  # handed to the consumer, which raises it
                buffer.put(error)
                return
            buffer.put(item)

    thread = threading.Thread(target=produce, daemon=True, name="prefetch_to_device")
    thread.start()
    try:
        for _ in steps:
            item = buffer.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
