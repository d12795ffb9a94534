"""What the collectors that call a vendor's driver library (NVML through pynvml, FuriosaAI's
``furiosa_smi`` bindings) share: what a library error means for the poll (:class:`Outcome`, turned
into an exception by :func:`outcome_error`), and :class:`WorkerCalls`, which runs one poll's blocking
library calls in a worker thread under the poll timeout.

Each collector keeps its own table from its library's errors (a return code, an exception class
or text) to an :class:`Outcome`; the meaning of each outcome is the same for both:

* ``ABSENT``: the value is not there; the field is absent, never 0;
* ``DEVICE_GONE``: the device went away (:class:`DeviceGone`): left out of this poll;
* ``REINIT``: the library lost its state (:class:`Reinit`): initialised again at the next poll;
* ``UNAVAILABLE``: the library cannot work on this host (:class:`CollectorUnavailable`);
* ``TIMEOUT``: the driver timed out (:class:`CollectorTimeout`);
* ``FAILED``: anything else (:class:`CollectorError`).

A library call that blocks cannot be interrupted: :class:`WorkerCalls` gives up waiting after the
timeout, keeps the library locked until the abandoned call returns (no second call is started
meanwhile: the next poll fails at once as blocked) and drops the late result.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable
from typing import TypeVar

from kwatt.collectors.base import CollectorError, CollectorTimeout, CollectorUnavailable

__all__ = ["DeviceGone", "Outcome", "Reinit", "WorkerCalls", "outcome_error"]

T = TypeVar("T")


class Outcome(enum.Enum):
    """What a driver library's error means for the poll."""

    ABSENT = "the value is not there: the field is absent"
    DEVICE_GONE = "the device went away: left out of this poll"
    REINIT = "the library lost its state: initialised again at the next poll"
    UNAVAILABLE = "the library cannot work on this host (library or driver missing)"
    TIMEOUT = "the driver timed out"
    FAILED = "any other failure"


class DeviceGone(CollectorError):
    """A library call said the device went away: the device is left out of this poll."""


class Reinit(CollectorError):
    """The library lost its initialisation: the next poll initialises it again."""


def outcome_error(kind: Outcome, message: str) -> CollectorError:
    """The exception a call that failed with outcome ``kind`` raises (``ABSENT`` is not an error
    where the caller accepts an absent value; where it does not, it is a plain failure)."""
    if kind is Outcome.DEVICE_GONE:
        return DeviceGone(message)
    if kind is Outcome.REINIT:
        return Reinit(message)
    if kind is Outcome.UNAVAILABLE:
        return CollectorUnavailable(message)
    if kind is Outcome.TIMEOUT:
        return CollectorTimeout(message)
    return CollectorError(message)


def _consume(task: asyncio.Future[T]) -> None:
    """Retrieve the result of a call that outlived its timeout (so asyncio does not log it)."""
    if not task.cancelled():
        task.exception()


class WorkerCalls:
    """One blocking library call at a time, in a worker thread, bounded by a timeout."""

    def __init__(self) -> None:
        self._busy = threading.Lock()  # held by the worker thread while it calls the library

    async def run(self, fn: Callable[[], T], timeout_s: float, *, blocked: str, late: str) -> T:
        """``fn()`` in a worker thread. :class:`CollectorTimeout` with message ``blocked`` when the
        previous call still runs, with ``late`` when this one does not return within
        ``timeout_s`` (it goes on in its thread and its result is dropped)."""
        if not self._busy.acquire(blocking=False):
            raise CollectorTimeout(blocked)
        task = asyncio.ensure_future(asyncio.to_thread(self._holding_lock, fn))
        task.add_done_callback(_consume)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(task)
        except TimeoutError:
            raise CollectorTimeout(late) from None

    def when_idle(self, fn: Callable[[], None]) -> None:
        """``fn()`` here and now unless a call is still running (then nothing: a blocked call still
        holds the library; closing it under that call could crash the process)."""
        if not self._busy.acquire(blocking=False):
            return
        try:
            fn()
        finally:
            self._busy.release()

    def _holding_lock(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        finally:
            self._busy.release()
