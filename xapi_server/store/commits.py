"""Between the store's memory and its database: changes waiting for the writer, the
batches it holds, and what happens when the disk refuses one.

Every change to a persistent object becomes an op with a sequence number. Ops are
handed to the writer thread in batches as soon as the event loop is free (and at
every `flush`), so the writer is never far behind memory.

When the disk refuses a batch (disk full, I/O error), that batch and everything after
it, handed over or not, is undone in memory, newest first: later changes were made on
top of the refused ones (a put carries the whole record), so keeping them would write
refused values to disk. The writer refuses whatever it still holds until `resume`.
The callers learn it two ways: a `flush` waiting for any of those ops raises, and a
task (contextvar) whose own ops were undone gets the error at its next `flush`, even
when someone else's flush had handed them over.
"""
from __future__ import annotations

import asyncio
import contextvars
from typing import NamedTuple

from ..errors import ApiError


class _Ticket:
    """Shared by the ops of one task (one API call): set when any of them was refused."""
    __slots__ = ("refused",)

    def __init__(self):
        self.refused: str | None = None


_TICKET: contextvars.ContextVar[_Ticket | None] = contextvars.ContextVar(
    "store_write_ticket", default=None)


class Op(NamedTuple):
    seq: int
    gen: int          # the first store generation this change produced
    op: tuple         # what the writer does: ("put"|"del"|"meta", ...)
    undo: tuple       # what the store needs to take it back
    ticket: _Ticket


def refused_error(reason: str) -> ApiError:
    # xapi has no error code for a failed database write (its flush thread only logs
    # one, the call has already succeeded); any unexpected failure is INTERNAL_ERROR
    # there, so it is here, with a reason a person can act on.
    return ApiError("INTERNAL_ERROR", f"database write failed: {reason}")


class CommitQueue:
    def __init__(self, db, undo, wake, committed):
        self._db = db
        # undo(ops): take ops back in memory, newest first; returns the ops that write
        # what memory holds now for everything they touched (writer.py: resume)
        self._undo = undo
        self._wake = wake              # tell event waiters the durable generation moved
        self._committed = committed    # committed(ops): these are in the database
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Op] = []   # not yet handed to the writer
        self._inflight: dict[int, list[Op]] = {}   # batch id -> ops, oldest batch first
        self._next_batch = 0
        self._seq = 0                  # ops made so far
        self._resolved = 0             # every op up to here is on disk or undone
        self._flushers: list[tuple[int, asyncio.Future]] = []   # (seq waited for, future)

    def start(self, loop):
        self._loop = loop
        self._db.start(self._done_threadsafe)

    # -- the store's side ---------------------------------------------------------

    def add(self, gen: int, op: tuple, undo: tuple, detached: bool = False):
        """Queue an op; `detached`: the store's own, whose refusal fails no caller."""
        ticket = None if detached else _TICKET.get()
        if ticket is None:
            ticket = _Ticket()
            if not detached:
                _TICKET.set(ticket)
        self._seq += 1
        if not self._pending and self._loop is not None:
            self._loop.call_soon(self.submit)
        self._pending.append(Op(self._seq, gen, op, undo, ticket))

    def submit(self):
        if not self._pending:
            return
        batch_id, self._next_batch = self._next_batch, self._next_batch + 1
        self._inflight[batch_id], self._pending = self._pending, []
        self._db.submit(batch_id, [o.op for o in self._inflight[batch_id]])

    def first_unresolved_gen(self) -> int | None:
        """The generation of the oldest change not yet known to be on disk."""
        for ops in self._inflight.values():
            return ops[0].gen
        return self._pending[0].gen if self._pending else None

    def settled(self) -> bool:
        """Whether flush() would return at once without raising: every change so far is
        on disk and none of this task's was refused. (A read costs no coroutine.)"""
        if self._resolved < self._seq:
            return False
        ticket = _TICKET.get()
        return ticket is None or ticket.refused is None

    async def flush(self):
        """Wait until every change made so far is on disk. Raise if any of them, or any
        earlier change of this task, was refused."""
        target = self._seq
        self.submit()
        reason = None
        if self._resolved < target:
            future = self._loop.create_future()
            self._flushers.append((target, future))
            reason = await future
        ticket = _TICKET.get()
        if ticket is not None and ticket.refused:
            reason = reason or ticket.refused
            ticket.refused = None   # told once
        if reason is not None:
            raise refused_error(reason)

    # -- the writer's answers (on the event loop) -----------------------------------

    def _done_threadsafe(self, batch_id, reason):
        self._loop.call_soon_threadsafe(self._done, batch_id, reason)

    def _done(self, batch_id, reason: str | None):
        ops = self._inflight.pop(batch_id, None)
        if ops is None:
            return   # already undone with an earlier refused batch
        if reason is None:
            self._resolved = ops[-1].seq
            self._committed(ops)
            self._release(lambda target: None)
        else:
            self._refuse(ops, reason)
        self._wake()

    def _refuse(self, first_ops, reason):
        later = [op for ops in self._inflight.values() for op in ops]
        undone = first_ops + later + self._pending
        self._inflight.clear()
        self._pending = []
        repairs = self._undo(undone)
        for op in undone:
            op.ticket.refused = reason
        self._resolved = self._seq
        first = first_ops[0].seq
        self._release(lambda target: reason if target >= first else None)
        self._db.resume(repairs)   # everything it still holds was undone above

    def _release(self, failure):
        """Answer the flushers whose ops are all resolved now, each with None or the
        reason `failure(target)` gives for failing it."""
        waiting = []
        for target, future in self._flushers:
            if future.done():
                continue   # its caller was cancelled
            if target <= self._resolved:
                future.set_result(failure(target))
            else:
                waiting.append((target, future))
        self._flushers = waiting
