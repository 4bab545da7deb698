"""The service's one worker: a bounded queue of requests, gathered into batches and scored together.

Requests arrive on the server's event loop; the models are used by one thread only, this worker's. It takes
the first request waiting, then for a short gathering window every other request that can share its batch
(the same kind of work, model and settings), up to a budget of characters, and runs them as one job of the
task they ask for: their prompts or documents go into one run, batched by length as the command line batches
them, and each request gets its own part of the results back. A request's numbers do not depend on what it
was batched with, beyond float rounding (the padding of a batch differs).

A request whose client went away before its turn is dropped unscored. A failure while a batch is scored (the
model giving non-finite values, say) fails the requests of that batch only; a request that is wrong on its
own (a prompt too long for the model) fails alone, before its batch is formed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import GptlossError


class ServeError(Exception):
    """A request's failure as the client sees it: an HTTP status, an OpenAI-style error type, one line."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", retry_after: int = 0):
        super().__init__(message)
        self.status, self.message, self.kind, self.retry_after = status, message, kind, retry_after


@dataclass
class Request:
    """One request's work: `kind` (complete, score, tokens, compare, tokenize), the model, what decides whom it
    may share a batch with (`key`), its payload, its size in characters, and where its answer goes."""

    kind: str
    model: str
    key: Hashable
    payload: Any
    size: int
    future: Future[Any] = field(default_factory=Future)
    gone: threading.Event = field(default_factory=threading.Event)  # the client disconnected
    tokens: int = 0  # scored, for the request log

    @property
    def group(self) -> tuple[str, str, Hashable]:
        return (self.kind, self.model, self.key)


# A kind of work: the requests of one batch in, one result (or ServeError) per request out.
Handler = Callable[[Sequence[Request]], Sequence[Any]]


class Worker:
    """Runs the handlers of each kind on gathered batches, in one thread (start/stop)."""

    def __init__(
        self, handlers: dict[str, Handler], queue_size: int = 256, window: float = 0.005, budget: int = 200_000
    ) -> None:
        self.handlers = handlers
        self.window = window  # seconds to wait for more requests to share a batch
        self.budget = budget  # most characters in one batch
        self._queue: queue.Queue[Request] = queue.Queue(maxsize=queue_size)
        self._held: deque[Request] = deque()  # taken from the queue, waiting for a batch of their own group
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gptloss-worker", daemon=True)
        self.busy = threading.Event()  # a batch is being scored
        self.scored = {"batches": 0, "requests": 0, "tokens": 0}  # what was scored so far (GET /health)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish what is queued, then end the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, request: Request) -> Future[Any]:
        """Queue a request; when the queue is full, ServeError 503 asking the client to come back."""
        if self._stop.is_set():
            raise ServeError(503, "the server is shutting down", "server_error", retry_after=1)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise ServeError(503, "the server is busy: too many requests waiting", "server_error", 1) from None
        return request.future

    def waiting(self) -> int:
        return self._queue.qsize() + len(self._held)

    def _next(self, timeout: float) -> Request | None:
        if self._held:
            return self._held.popleft()
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while True:
            first = self._next(0.05)
            if first is None:
                if self._stop.is_set() and self._queue.empty():
                    return
                continue
            batch = self._gather(first)
            batch = [r for r in batch if not r.gone.is_set() and r.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _gather(self, first: Request) -> list[Request]:
        """`first` and the requests of its group that come within the window, up to the budget."""
        batch, size = [first], first.size
        kept: deque[Request] = deque()
        for request in list(self._held):  # those already waiting come first, in order
            if request.group == first.group and size + request.size <= self.budget:
                batch.append(request)
                size += request.size
            else:
                kept.append(request)
        self._held = kept
        deadline = time.monotonic() + self.window
        while size < self.budget:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                request = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if request.group == first.group and size + request.size <= self.budget:
                batch.append(request)
                size += request.size
            else:
                self._held.append(request)
        return batch

    def _run(self, batch: list[Request]) -> None:
        self.busy.set()
        try:
            results = self.handlers[batch[0].kind](batch)
        except ServeError as exc:
            results = [exc] * len(batch)
        except GptlossError as exc:  # the model failed on this batch (non-finite values, say)
            results = [ServeError(500, f"scoring failed: {exc}", "server_error")] * len(batch)
        except Exception as exc:  # noqa: BLE001 - every request of the batch must hear of it
            results = [ServeError(500, f"scoring failed: {type(exc).__name__}: {exc}", "server_error")] * len(batch)
        finally:
            self.busy.clear()
        self.scored["batches"] += 1
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                request.future.set_exception(result)
            else:
                self.scored["requests"] += 1
                self.scored["tokens"] += request.tokens
                request.future.set_result(result)
