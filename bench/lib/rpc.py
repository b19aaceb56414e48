"""JSON lines between a bench's processes, one object a line, each request with an id.

- A server process listens on a loopback TCP port (`serve_rpc`) and prints
  `{"port": N, ...}` as its first stdout line; clients send it requests (`RpcClient`).
- A child process (`Child`, the same bench script run with other arguments) takes
  commands on stdin and answers on stdout (`serve_stdio`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.rpc")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


async def send_json(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


async def read_json(reader: asyncio.StreamReader) -> Any:
    line = await reader.readline()
    if not line:
        raise ConnectionError("peer closed")
    return json.loads(line)


class RpcClient:
    """Requests with ids over one TCP connection (clients -> server: offers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int) -> RpcClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                msg = await read_json(self.reader)
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        fut.set_exception(RuntimeError(msg["error"]))
                    else:
                        fut.set_result(msg["result"])

    async def call(self, **req: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await send_json(self.writer, {"id": self.next_id, **req})
        return await fut

    def close(self) -> None:
        self.writer.close()


async def serve_rpc(handler: Handler) -> int:
    """Serve `handler` on a loopback port (returned); requests run concurrently."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def one(msg: dict[str, Any]) -> None:
            try:
                result = await handler(msg)
                await send_json(writer, {"id": msg["id"], "result": result})
            except Exception as exc:
                log.exception("request failed")
                await send_json(writer, {"id": msg["id"], "error": repr(exc)})

        with contextlib.suppress(ConnectionError):
            while True:
                msg = await read_json(reader)
                asyncio.ensure_future(one(msg))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return int(server.sockets[0].getsockname()[1])


async def serve_stdio(handler: Handler, last_op: str = "close") -> None:
    """A child's side of `Child`: commands on stdin, one at a time, answers on stdout;
    returns at end of input or after answering `last_op`."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while True:
        line = await stdin.readline()
        if not line:
            break
        msg = json.loads(line)
        result = await handler(msg)
        sys.stdout.write(json.dumps({"id": msg["id"], "result": result}) + "\n")
        sys.stdout.flush()
        if msg["op"] == last_op:
            break


class Child:
    """A bench script run again as a child process (a server, or a process of clients),
    spoken to over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, script: Path, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # one answer line lists every frame of every room
        )
        return cls(proc)

    async def line(self) -> Any:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"process {self.pid} exited ({self.proc.returncode})")
        return json.loads(raw)

    async def call(self, **msg: Any) -> Any:
        assert self.proc.stdin is not None
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, **msg}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self.line()
        return reply["result"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
