"""A loopback OpenAI-compatible stub that streams chat completions over SSE at once (or
with a fixed delay per token): what the load client is measured against when the server
must not be the bottleneck. Not a model: it echoes ``max_tokens`` tokens of "x"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator


class StubServer:
    """``with StubServer() as url:`` serves ``url`` (``http://127.0.0.1:PORT/v1``) from a
    thread of its own; ``status`` other than 200 answers every request with that error."""

    def __init__(
        self, token_delay_s: float = 0.0, status: int = 200, max_streams: int | None = None
    ) -> None:
        self.token_delay_s = token_delay_s
        self.status = status
        self.max_streams = max_streams
        """Streams served at once (the rest wait): a server with a capacity, to saturate."""
        self._slots: asyncio.Semaphore | None = None
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> str:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> int:
        if self.max_streams is not None:
            self._slots = asyncio.Semaphore(self.max_streams)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                if lines[0].startswith("GET"):
                    await self._whole(writer, 200, {"data": [{"id": "stub"}]})
                elif self.status != 200:
                    await self._whole(writer, self.status, {"error": {"message": "stub says no"}})
                elif self._slots is None:
                    await self._stream(writer, int(body.get("max_tokens", 16)))
                else:
                    async with self._slots:
                        await self._stream(writer, int(body.get("max_tokens", 16)))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _whole(self, writer: asyncio.StreamWriter, status: int, data: object) -> None:
        payload = json.dumps(data).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, tokens: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )

        def event(data: object) -> bytes:
            text = data if isinstance(data, str) else json.dumps(data)
            chunk = f"data: {text}\n\n".encode()
            return f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"

        writer.write(event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
        for i in range(tokens):
            if self.token_delay_s:
                await writer.drain()
                await asyncio.sleep(self.token_delay_s)
            last = i == tokens - 1
            choice = {
                "index": 0,
                "delta": {"content": "x"},
                "finish_reason": "length" if last else None,
            }
            writer.write(event({"choices": [choice]}))
        usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
        writer.write(event({"choices": [], "usage": usage}))
        writer.write(event("[DONE]"))
        writer.write(b"0\r\n\r\n")
        await writer.drain()


@contextlib.contextmanager
def stub_server(
    token_delay_s: float = 0.0, status: int = 200, max_streams: int | None = None
) -> Iterator[str]:
    with StubServer(token_delay_s, status, max_streams) as url:
        yield url


if __name__ == "__main__":  # serve until stdin closes: a stub in a process of its own
    import sys

    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with StubServer(delay) as served:
        print(served, flush=True)
        sys.stdin.read()
