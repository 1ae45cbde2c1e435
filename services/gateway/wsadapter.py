"""aiohttp's WebSocketResponse behind the small part of websockets' ServerConnection that ChatSession uses.

ChatSession was written against websockets (`send`, `recv`, `close`, async iteration, and
`websockets.exceptions.ConnectionClosed` when the learner is gone); keeping that surface lets the HTTP layer
change without touching the session logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

_DONE = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class SocketAdapter:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self.request = request
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self.remote_address: Any = peer

    def _closed(self) -> ConnectionClosed:
        code = self._ws.close_code
        rcvd = Close(code, "") if code is not None else None
        return ConnectionClosed(rcvd, None)

    async def send(self, data: str | bytes) -> None:
        """Send text or bytes, raising the closed error if the socket is gone."""
        if self._ws.closed:
            raise self._closed()
        try:
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:  # the transport closed under us
            raise self._closed() from exc

    async def recv(self) -> str | bytes:
        """Wait for the next text or binary message, raising once the socket closes."""
        while True:
            msg = await self._ws.receive()
            if msg.type is WSMsgType.TEXT:
                return msg.data
            if msg.type is WSMsgType.BINARY:
                return msg.data
            if msg.type in _DONE:
                raise self._closed()
            # PING/PONG are answered and consumed by aiohttp (autoping); nothing else reaches here.

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket with a code and reason."""
        await self._ws.close(code=code, message=reason.encode())

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosed:
            return
