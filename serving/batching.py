"""Dynamic micro-batching: concurrent requests share one model call.

Requests wait in a queue per *key* (servable version, signature and the
non-batch shapes of the inputs: only requests with the same key can be
concatenated). ``workers`` threads run batches. Whenever a worker is free,
the dispatcher takes the queue whose oldest request waited longest and
closes a batch when it holds ``max_batch_size`` rows or when that oldest
request has waited ``batch_timeout_s``, whichever comes first; when no batch
is computing at all, it does not wait (a lone request on an idle server is
answered at once). Under load all workers are busy, the queues grow
meanwhile, and each free worker takes a full batch at once. (TF Serving
closes batches on the timeout even while its threads are busy; taking what
is queued when a worker frees up gives larger batches for the same latency.)

With batching disabled, each request runs alone as soon as a worker is free.

Limits, answered as TF Serving would:
- a request of more than ``max_batch_size`` rows: 400 INVALID_ARGUMENT;
- more than ``max_queue`` requests waiting: 503 UNAVAILABLE ("the batch
  scheduling queue ... is full"), so overload sheds quickly instead of
  piling up latency.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
from collections.abc import Callable, Hashable

from serving.errors import InvalidArgument, Unavailable


@dataclasses.dataclass
class _Request:
    inputs: dict
    rows: int
    future: asyncio.Future
    arrival: float


@dataclasses.dataclass
class BatchStats:
    """Counters since start: ``batches`` run, ``requests`` and ``rows`` in them."""

    batches: int = 0
    requests: int = 0
    rows: int = 0
    rejected_queue_full: int = 0

    @property
    def mean_batch_rows(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


class MicroBatcher:
    """Collects concurrent requests into batches and runs them on worker threads.

    Args:
      run_batch: ``run_batch(key, [inputs, ...]) -> [outputs or Exception, ...]``,
        blocking, called on a worker thread; one result per request, in order.
      workers: batches computed at the same time (threads).
      max_batch_size: most rows in one batch, and in one request.
      batch_timeout_s: longest wait of a request for others to join its batch.
      max_queue: most requests waiting for a worker.
      enabled: ``False`` runs every request alone (no batching).
    """

    def __init__(
        self,
        run_batch: Callable[[Hashable, list], list],
        *,
        workers: int = 2,
        max_batch_size: int = 32,
        batch_timeout_s: float = 0.002,
        max_queue: int = 256,
        enabled: bool = True,
    ):
        if workers < 1 or max_batch_size < 1 or max_queue < 1 or batch_timeout_s < 0:
            raise ValueError("workers, max_batch_size and max_queue must be ≥ 1 and batch_timeout_s ≥ 0.")
        self._run_batch = run_batch
        self.workers, self.max_batch_size = workers, max_batch_size
        self.batch_timeout_s, self.max_queue, self.enabled = batch_timeout_s, max_queue, enabled
        self.stats = BatchStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self._queues: dict[Hashable, collections.deque[_Request]] = {}
        self._rows: dict[Hashable, int] = {}
        self._waiting = 0  # requests queued, not yet taken by a worker
        self._computing = 0  # requests in batches on the workers
        self._running: set[asyncio.Task] = set()
        self._slots: asyncio.Semaphore | None = None
        self._arrived: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        """Requests waiting or computing."""
        return self._waiting + self._computing

    def _start(self) -> None:
        if self._dispatcher is None:
            self._slots = asyncio.Semaphore(self.workers)
            self._arrived = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="batch-dispatcher")

    async def submit(self, key: Hashable, inputs: dict, rows: int):
        """Queues one request (``inputs``: arrays of ``rows`` rows) and returns its outputs.

        Raises:
          InvalidArgument: more rows than ``max_batch_size``.
          Unavailable: the queue is full.
          Exception: whatever ``run_batch`` returned for this request.
        """
        if rows > self.max_batch_size:
            raise InvalidArgument(f"Task size {rows} is larger than maximum batch size {self.max_batch_size}")
        if self._waiting >= self.max_queue:
            self.stats.rejected_queue_full += 1
            raise Unavailable("The batch scheduling queue to which this task was submitted is full")
        self._start()
        loop = asyncio.get_running_loop()
        request = _Request(inputs, rows, loop.create_future(), loop.time())
        self._queues.setdefault(key, collections.deque()).append(request)
        self._rows[key] = self._rows.get(key, 0) + rows
        self._waiting += 1
        self._arrived.set()
        # A cancelled wait (client gone, deadline passed) cancels the future; the
        # dispatcher then drops the request if no worker has taken it yet.
        return await request.future

    # -- dispatcher -----------------------------------------------------------------------
    def _drop_cancelled(self, key) -> None:
        queue = self._queues[key]
        while queue and queue[0].future.done():
            self._forget(key, queue.popleft())

    def _forget(self, key, request: _Request) -> None:
        self._rows[key] -= request.rows
        self._waiting -= 1

    def _oldest_key(self):
        oldest = None
        for key in list(self._queues):
            self._drop_cancelled(key)
            queue = self._queues[key]
            if not queue:
                del self._queues[key], self._rows[key]
            elif oldest is None or queue[0].arrival < self._queues[oldest][0].arrival:
                oldest = key
        return oldest

    async def _next_key(self):
        while True:
            key = self._oldest_key()
            if key is not None:
                return key
            self._arrived.clear()
            await self._arrived.wait()

    async def _fill(self, key) -> None:
        """Waits until ``key``'s queue holds a full batch or its oldest request timed out.

        An idle server (no batch computing) does not wait: a lone request is
        answered at once, and requests arriving meanwhile form the next batch.
        """
        loop = asyncio.get_running_loop()
        if not self._computing:
            return
        while self._rows.get(key, 0) < self.max_batch_size:
            self._drop_cancelled(key)
            if not self._queues.get(key):
                return
            remaining = self._queues[key][0].arrival + self.batch_timeout_s - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self, key) -> list[_Request]:
        queue, batch, rows = self._queues.get(key) or collections.deque(), [], 0
        while queue:
            request = queue[0]
            if request.future.done():  # cancelled while waiting
                self._forget(key, queue.popleft())
                continue
            if batch and (not self.enabled or rows + request.rows > self.max_batch_size):
                break
            self._forget(key, queue.popleft())
            batch.append(request)
            rows += request.rows
        return batch

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                key = await self._next_key()
                if self.enabled:
                    await self._fill(key)
                batch = self._take(key)
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            self._computing += len(batch)
            task = asyncio.get_running_loop().create_task(self._run(key, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, key, batch: list[_Request]) -> None:
        try:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.rows += sum(r.rows for r in batch)
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, key, [r.inputs for r in batch])
            except Exception as err:  # noqa: BLE001 - run_batch itself failed: every request gets it
                results = [err] * len(batch)
            for request, result in zip(batch, results):
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(result)
        finally:
            self._computing -= len(batch)
            self._slots.release()

    async def close(self, timeout: float = 10.0) -> None:
        """Finishes the batches running, fails requests still queued (503), stops the workers."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except asyncio.CancelledError:
                pass
        for queue in self._queues.values():
            for request in queue:
                if not request.future.done():
                    request.future.set_exception(Unavailable("The server is shutting down"))
        self._queues.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
