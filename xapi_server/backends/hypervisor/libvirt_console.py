"""A guest's serial console through libvirt's console stream (virDomainOpenConsole),
as an asyncio byte stream (contract.ConsoleStream).

The stream is non-blocking and watched by libvirt's own event loop (the thread
libvirt_conn runs): the callback reads what is there and hands it to the asyncio loop.
A guest can write to its serial port faster than a client reads (`cat /dev/zero`), so
past MAX_PENDING unread bytes the callback stops asking for readable events until the
reader catches up: memory stays bounded, the guest's port simply waits.
"""
from __future__ import annotations

import asyncio
import threading

import libvirt

from .contract import HypervisorError

MAX_PENDING = 256 * 1024        # unread console bytes held before we stop reading
_READ = 64 * 1024
_WATCH = (libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR |
          libvirt.VIR_STREAM_EVENT_HANGUP)
_ENDED = libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


class LibvirtConsole:
    def __init__(self, stream, loop: asyncio.AbstractEventLoop):
        self._stream = stream
        self._loop = loop
        self._lock = threading.Lock()     # the callback runs in libvirt's event thread
        self._chunks: list[bytes] = []
        self._pending = 0
        self._paused = False
        self._ended = False
        self._closed = False
        self._ready = asyncio.Event()

    @classmethod
    def open(cls, conn, dom, loop) -> "LibvirtConsole":
        """In a worker thread: open the domain's first console, taking it over from
        any other client (as `virsh console --force`)."""
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        console = cls(stream, loop)
        stream.eventAddCallback(_WATCH, console._on_event, None)
        return console

    # -- libvirt's event thread -------------------------------------------------------
    def _on_event(self, stream, events, _opaque):
        ended = bool(events & _ENDED)
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            ended |= self._drain(stream)
        if ended:
            with self._lock:
                self._ended = True
            self._stop_watching()
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:    # the server's loop has closed: nobody is reading
            pass

    def _drain(self, stream) -> bool:
        """Read what is there; True at the end of the stream."""
        while True:
            with self._lock:
                if self._closed or self._pending >= MAX_PENDING:
                    if not self._closed and not self._paused:
                        self._paused = True
                        self._update(0)
                    return False
            try:
                data = stream.recv(_READ)
            except libvirt.libvirtError:
                return True
            if data == -2:      # nothing more for now
                return False
            if not data:
                return True
            with self._lock:
                self._chunks.append(data)
                self._pending += len(data)

    def _update(self, events: int):
        try:
            self._stream.eventUpdateCallback(events)
        except libvirt.libvirtError:
            pass

    def _stop_watching(self):
        try:
            self._stream.eventRemoveCallback()
        except libvirt.libvirtError:
            pass

    # -- the asyncio side -------------------------------------------------------------
    async def read(self) -> bytes:
        while True:
            with self._lock:
                if self._chunks:
                    data = b"".join(self._chunks)
                    self._chunks, self._pending = [], 0
                    if self._paused and not self._ended:
                        self._paused = False
                        self._update(_WATCH)
                    return data
                if self._ended or self._closed:
                    return b""
                self._ready.clear()
            await self._ready.wait()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._ended or self._closed:
                raise HypervisorError("the console is closed")
            try:
                sent = await asyncio.to_thread(self._stream.send, bytes(view))
            except libvirt.libvirtError as exc:
                raise HypervisorError(exc.get_error_message() or str(exc)) from None
            if sent == -2:      # libvirt's buffer is full: let it drain
                await asyncio.sleep(0.01)
                continue
            view = view[sent:]

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._ready.set()

        def _close():
            self._stop_watching()
            try:
                self._stream.abort()
            except libvirt.libvirtError:
                pass
        await asyncio.to_thread(_close)
