"""The server's event loop: uvloop, except that child processes are started the way
CPython's `subprocess` starts them (vfork or posix_spawn), never by libuv.

Why: while libuv spawns a child, uvloop arms a process-wide pthread_atfork child
handler that takes the GIL. A fork made by any *other* thread in that window runs the
handler too, in a child where the GIL's owner does not exist: that child blocks every
signal but SIGKILL and waits forever, before it could exec. Other threads of this
server do fork: libvirt's embedded QEMU driver (qemu:///embed) forks from its own
threads to start QEMU and to clean up after one that died (the security driver's
transaction runs in a forked child), and PAM modules may fork helpers. Seen: a guest
whose QEMU was killed stayed Running for good (libvirt waits for its stuck child), and
the whole API froze when the stuck child also inherited the write end of libuv's
exec-status pipe, which the event loop was blocked reading. vfork and posix_spawn run
no atfork handlers, and CPython arms none.

Everything else (sockets, TLS, timers) stays uvloop. asyncio.create_subprocess_exec
works unchanged: the transport is asyncio's own; a pidfd tells the loop when the child
exits, as asyncio's PidfdChildWatcher does.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from asyncio import base_subprocess

try:
    import uvloop
except ImportError:  # uvicorn[standard] brings it; without it asyncio's loop is safe
    uvloop = None


class _PopenTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's Unix subprocess transport; the child is reaped by `_watch_exit`."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        self._proc = subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout,
                                      stderr=stderr, universal_newlines=False,
                                      bufsize=bufsize, **kwargs)
        for name in ("stdin", "stdout", "stderr"):
            pipe = getattr(self._proc, name)
            if pipe is not None:
                setattr(self._proc, name, _HandedOver(pipe))


class _HandedOver:
    """A pipe for uvloop's pipe transports. They close the descriptor themselves, then
    close the file object they were given as well; a second close of the same number
    could hit a descriptor another thread (libvirt's) has just opened. So they get a
    descriptor of their own, in an object whose close() leaves it alone."""

    def __init__(self, pipe):
        self._fd = os.dup(pipe.fileno())
        pipe.close()

    def fileno(self) -> int:
        return self._fd

    def close(self):
        pass   # the transport closed it


def _refuse_text_mode(kwargs: dict):
    """asyncio's rules: pipes carry bytes, unbuffered."""
    for name in ("universal_newlines", "text", "encoding", "errors"):
        if kwargs.pop(name, None):
            raise ValueError(f"{name} is not supported by asyncio subprocesses")
    if kwargs.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")


if uvloop is not None:
    class Loop(uvloop.Loop):
        async def subprocess_exec(self, protocol_factory, program, *args,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, **kwargs):
            return await self._spawn(protocol_factory, [program, *args], False,
                                     stdin, stdout, stderr, kwargs)

        async def subprocess_shell(self, protocol_factory, cmd, *, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs):
            return await self._spawn(protocol_factory, cmd, True, stdin, stdout, stderr,
                                     kwargs)

        async def _spawn(self, protocol_factory, args, shell, stdin, stdout, stderr, kwargs):
            _refuse_text_mode(kwargs)
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = _PopenTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                        0, waiter=waiter, **kwargs)
            self._watch_exit(transport)
            try:
                await waiter
            except BaseException:
                transport.close()
                await transport._wait()
                raise
            return transport, protocol

        def _watch_exit(self, transport):
            popen = transport.get_extra_info("subprocess")
            pidfd = os.pidfd_open(popen.pid)   # readable once the child has exited

            def exited():
                self.remove_reader(pidfd)
                os.close(pidfd)
                # It has exited: wait() returns at once (and copes with a poll() from
                # transport.close() having reaped it already).
                transport._process_exited(popen.wait())
            self.add_reader(pidfd, exited)

    def new_event_loop() -> asyncio.AbstractEventLoop:
        return Loop()
else:
    new_event_loop = asyncio.new_event_loop
