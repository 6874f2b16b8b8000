"""Whether the running code may block, and the signal that it would have to.

The broker runs a KBS step on the event loop first, where nothing may wait: a statement
that would wait for SQLite's write lock, or a collateral lookup that would ask a vendor
service, raises :class:`WouldBlock` instead, before it has changed anything, and the step is
run again in a thread where waiting is allowed. Most steps never wait, and a thread hop costs
about a millisecond of CPU per flow under load (the GIL passed between the loop and the pool),
so this keeps the common case on the loop without letting the rare case stall it.

The flag is a context variable: set on the event loop for one call, it does not reach
threads, which may always block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

_T = TypeVar("_T")

_MAY_BLOCK: ContextVar[bool] = ContextVar("veritee_may_block", default=True)


class WouldBlock(Exception):
    """The call would have to wait (for a lock or the network); run it where it may.

    Not a :class:`veritee.errors.VeriteeError`: no handler of evidence or store errors may
    take it for a verdict."""

    def __init__(self, what: str, resume: Callable[[], Any] | None = None) -> None:
        super().__init__(what)
        self.what = what
        #: The rest of the call, to run where it may block; None: run the whole call again.
        self.resume = resume


def may_block() -> bool:
    """Whether the running code may wait for locks and the network."""
    return _MAY_BLOCK.get()


@contextmanager
def nonblocking() -> Iterator[None]:
    """Within the block, code that would wait raises :class:`WouldBlock` instead."""
    token = _MAY_BLOCK.set(False)
    try:
        yield
    finally:
        _MAY_BLOCK.reset(token)


def last_step(step: Callable[[], _T]) -> _T:
    """Run ``step``, the last part of a call (typically its one write). Where ``step`` would
    block, the :class:`WouldBlock` raised carries it as ``resume``, so the caller runs only
    ``step`` where it may block, not the whole call again (the verification before a write
    is not repeated because the write met a lock). ``step`` must have changed nothing when
    it raised :class:`WouldBlock`."""
    try:
        return step()
    except WouldBlock as exc:
        if exc.resume is not None:
            raise
        raise WouldBlock(exc.what, resume=step) from exc


def about_to_block(what: str) -> None:
    """Call before waiting; raises :class:`WouldBlock` where waiting is not allowed."""
    if not _MAY_BLOCK.get():
        raise WouldBlock(what)
