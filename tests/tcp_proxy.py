"""A TCP proxy a test controls, between a server and its database: it forwards, or it blackholes."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Proxy:
    """Forwards 127.0.0.1:`port` to `target`, on its own event loop thread, until `blackhole` is set:
    then it keeps every connection open, and accepts new ones, but drops every byte both ways, as a
    network partition does (no reset, no FIN: a peer waits for as long as it lasts). Bytes dropped are
    lost: a connection that had some in flight is broken for good, one that stayed idle works again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.blackhole = False
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        if self.blackhole:  # a partition: the connect seems to work, and nothing ever answers
            await self._pipe(client_reader, None)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.add(upstream_writer)
        pipes = asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        try:
            await pipes
        except asyncio.CancelledError:  # the proxy is closing
            pipes.cancel()
            await asyncio.gather(pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):  # cancelled: the proxy is closing
            while data := await reader.read(65536):
                if writer is not None and not self.blackhole:
                    writer.write(data)
                    await writer.drain()
        if writer is not None and not self.blackhole:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
