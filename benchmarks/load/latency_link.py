"""A long link on loopback: a TCP proxy that delays every byte by a one-way delay in each
direction and keeps at most a window of bytes in flight per direction and connection.

This machine's kernel has no ``netem`` qdisc (``tc qdisc add ... netem`` answers
"Specified qdisc kind is unknown"), so the link is emulated in user space. What matters
for an upload over a long link is reproduced: a round trip per request/answer, and a
connection carrying at most ``window`` bytes per one-way delay (what a TCP window does),
so one stream cannot fill the link and parallel streams can.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time
from typing import Final

READ: Final = 256 << 10


class LatencyLink:
    """``LatencyLink(target_host, target_port, delay=0.025, window=4 << 20)``; ``start()``
    returns the local port; runs in a thread of its own."""

    def __init__(
        self, host: str, port: int, *, delay: float = 0.025, window: int = 4 << 20
    ) -> None:
        self.target = (host, port)
        self.delay = delay
        self.window = window
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        self._thread.start()
        self._ready.wait(10)
        return self.port

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        for stream in (writer, up_writer):
            sock = stream.get_extra_info("socket")
            if sock is not None:  # small kernel buffers: the window here is what counts
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Bytes read now are written ``delay`` later; reading pauses while ``window``
        bytes are on their way (they are 'acknowledged' when written)."""
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        in_flight = 0
        room = asyncio.Condition()
        arrived = asyncio.Event()
        done = False

        async def deliver() -> None:
            nonlocal in_flight
            while True:
                while not queue:
                    if done:
                        return
                    arrived.clear()
                    await arrived.wait()
                due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                async with room:
                    in_flight -= len(data)
                    room.notify_all()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                async with room:
                    # (wait_for calls it at once and on each notify: the current value is meant)
                    await room.wait_for(lambda: in_flight < self.window)  # noqa: B023
                data = await reader.read(min(READ, self.window))
                if not data:
                    break
                in_flight += len(data)
                queue.append((time.monotonic() + self.delay, data))
                arrived.set()
        finally:
            done = True
            arrived.set()
            try:
                await sender
            finally:
                writer.close()
