"""Dynamic micro-batching for the HTTP service (:class:`MicroBatcher`).

Requests wait in one queue; a batcher task takes the oldest one, then for at most ``max_wait_s``
gathers more until the batch holds ``max_batch_size`` texts, and runs the model on the merged
inputs in a single worker thread, off the event loop. While the model runs new requests queue
up, so under load batches fill without waiting; that is why :class:`~squeezebert.serve.ServeConfig`
defaults ``max_wait_ms`` to 0 (an idle server answers a lone request at once instead of holding it
back for company). Each request gets exactly its own slice of the results back, in order. A
request is never split: one with more texts than ``max_batch_size`` runs alone. Texts and pairs
are never mixed in one model call.

Nothing here knows about HTTP: :mod:`squeezebert.serve` maps :class:`QueueFull` to 503 and feeds
the batch-size and queue-depth metrics through the ``on_batch`` and ``on_queue`` callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from squeezebert.infer import Prediction, TextInput

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The batcher's queue holds ``max_queue`` requests already."""


@dataclass
class _Item:
    inputs: list[TextInput]
    future: asyncio.Future[list[Prediction]]
    pairs: bool


class MicroBatcher:
    """Merge concurrent requests into model batches run by one worker thread.

    ``predict(inputs)`` is called in the worker thread with the merged inputs of one or more
    requests (all texts or all pairs; the two kinds are never mixed in one call) and must return
    one prediction per input, in order. ``on_batch(size, seconds)`` and ``on_queue(depth)`` feed
    the metrics. Use from one event loop: :meth:`start`, :meth:`submit` per request,
    :meth:`close` at shutdown (it finishes what is queued first).
    """

    def __init__(
        self,
        predict: Callable[[list[TextInput]], list[Prediction]],
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        batching: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.batching = batching and max_batch_size > 1
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._pending: collections.deque[_Item] = collections.deque()
        # One thread: one model call at a time keeps torch's intra-op threads from fighting each
        # other. (The tokenizer is thread-safe, so this is a choice, not a constraint.)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezebert-model")
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the batcher task on the running loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="squeezebert-batcher")

    def submit(self, inputs: list[TextInput]) -> asyncio.Future[list[Prediction]]:
        """Queue one request's inputs; the future resolves to its predictions in order.

        Raises :class:`QueueFull` when ``max_queue`` requests are waiting, and RuntimeError once
        :meth:`close` has begun.
        """
        if not inputs:
            raise ValueError("submit at least one input")
        if self._closing or self._arrived is None:
            raise RuntimeError("the batcher is not running")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"{len(self._pending)} requests are waiting (max_queue={self.max_queue})")
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(inputs, future, isinstance(inputs[0], (tuple, list))))
        self._queue_changed()
        self._arrived.set()
        return future

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the model thread (warm-up uses this), between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Finish the queued requests, then stop the task and the worker thread."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # ------------------------------------------------------------------ internals
    def _queue_changed(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._pending))

    async def _next(self) -> _Item | None:
        assert self._arrived is not None
        while True:
            while self._pending:
                item = self._pending.popleft()
                self._queue_changed()
                if not item.future.done():  # done = timed out (cancelled) while waiting
                    return item
            if self._closing:
                return None
            self._arrived.clear()
            await self._arrived.wait()

    def _take_more(self, batch: list[_Item], size: int) -> tuple[int, bool]:
        """Move queued requests of the batch's kind into it while they fit, oldest first.
        Returns the new size and whether a request that does not fit is waiting (stop then)."""
        kind = batch[0].pairs
        kept: list[_Item] = []
        blocked = False
        while self._pending:
            item = self._pending.popleft()
            if item.future.done():
                continue
            if blocked or item.pairs != kind:
                kept.append(item)
            elif size + len(item.inputs) <= self.max_batch_size:
                batch.append(item)
                size += len(item.inputs)
            else:
                kept.append(item)
                blocked = True  # first in line and too big: it opens the next batch
        self._pending.extendleft(reversed(kept))
        self._queue_changed()
        return size, blocked

    async def _gather(self, first: _Item) -> list[_Item]:
        batch, size = [first], len(first.inputs)
        if not self.batching or size >= self.max_batch_size:
            return batch
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while True:
            size, blocked = self._take_more(batch, size)
            remaining = deadline - loop.time()
            if blocked or size >= self.max_batch_size or self._closing or remaining <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                size, _ = self._take_more(batch, size)
                return batch

    async def _run(self) -> None:
        while True:
            first = await self._next()
            if first is None:
                return
            batch = await self._gather(first)
            inputs = [x for item in batch for x in item.inputs]
            try:
                predictions = await self._call(inputs)
            except Exception as e:
                if len(batch) == 1:
                    log.exception("model call on %d inputs failed", len(inputs))
                    if not batch[0].future.done():
                        batch[0].future.set_exception(e)
                    continue
                # One request's input may be what broke the call: run each request on its own, so
                # that only the one that fails again gets the error.
                log.warning("model call on %d requests failed (%s: %s); running them one by one", len(batch),
                            type(e).__name__, e)  # fmt: skip
                for item in batch:
                    if item.future.done():  # timed out meanwhile
                        continue
                    try:
                        result = await self._call(item.inputs)
                    except Exception as e:
                        log.exception("model call on %d inputs failed", len(item.inputs))
                        if not item.future.done():
                            item.future.set_exception(e)
                    else:
                        if not item.future.done():
                            item.future.set_result(result)
                continue
            offset = 0
            for item in batch:
                n = len(item.inputs)
                if not item.future.done():  # a request that timed out meanwhile gets nothing
                    item.future.set_result(predictions[offset : offset + n])
                offset += n

    async def _call(self, inputs: list[TextInput]) -> list[Prediction]:
        """One model call in the worker thread, checked and recorded in the metrics."""
        start = time.perf_counter()
        predictions = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, inputs)
        if len(predictions) != len(inputs):
            raise RuntimeError(f"the model returned {len(predictions)} results for {len(inputs)} inputs")
        if self._on_batch is not None:
            self._on_batch(len(inputs), time.perf_counter() - start)
        return predictions
