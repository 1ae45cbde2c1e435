"""Helpers for the fault, fuzz and abuse tests (the `kit` fixture): derived stacks with their own processes,
a pausable TCP proxy to make DynamoDB unreachable, turn counting through the Conversations admin API, and
small polling helpers. The shared stack itself is tests/support/kotoba_stack.py."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc


def derived_stack(stack, name: str, **env: str):
    """A Stack sharing the tables and snapshot of `stack` but with its own env (ports, endpoints, faults).

    Its processes are separate: start them with `start_service` / `start_gateway`, stop with `stop_all`.
    """
    cls = type(stack)
    logs = stack.logs / name
    logs.mkdir(parents=True, exist_ok=True)
    return cls(stack.env(**env), logs)


async def open_session(url: str, token: str):
    """A started text session (ChatClient, its `session` frame), or (None, what the refusal looked like:
    an HTTP status, an error frame and its close code)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from services.gateway.client import ChatClient

    try:
        client = await ChatClient.open(url, token)
    except InvalidStatus as exc:
        return None, {"http": exc.response.status_code}
    try:
        await client.send(type="start", mode="text")
        frame = await client.recv_json(wait_s=30)
        if frame["type"] == "session":
            return client, frame
        try:
            await client.recv_json(wait_s=10)
        except ConnectionClosed as closed:
            frame["close"] = closed.rcvd.code if closed.rcvd else None
        await client.close()
        return None, frame
    except ConnectionClosed as closed:
        return None, {"close": closed.rcvd.code if closed.rcvd else None}


def new_addr() -> str:
    from devtools.procs import free_port

    return f"127.0.0.1:{free_port()}"


def learner(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not true after {timeout:.0f}s (last: {last!r})")


# ---------------------------------------------------------------------- turns stored in Conversations

def stored_turns(stack, user_id: str) -> list:
    """Every stored turn of a learner, via the admin RPC (what an operator would look at)."""
    from kotoba.v1 import conversations_pb2 as pb
    from kotoba.v1 import conversations_pb2_grpc
    from services.common.auth import auth_metadata

    admin = stack.token("fault-admin", "admin")
    turns: list = []
    with grpc.insecure_channel(stack.addr("conversations")) as ch:
        stub = conversations_pb2_grpc.ConversationsStub(ch)
        token = ""
        while True:
            reply = stub.ListUserConversations(pb.ListUserConversationsRequest(user_id=user_id, page_size=100,
                                                                               page_token=token),
                                               metadata=auth_metadata(admin), timeout=10)
            turns.extend(reply.turns)
            token = reply.next_page_token
            if not token:
                return turns


def session_turns(stack, session_id: str) -> list:
    from kotoba.v1 import conversations_pb2 as pb
    from kotoba.v1 import conversations_pb2_grpc
    from services.common.auth import auth_metadata

    with grpc.insecure_channel(stack.addr("conversations")) as ch:
        stub = conversations_pb2_grpc.ConversationsStub(ch)
        try:
            reply = stub.GetConversation(pb.GetConversationRequest(session_id=session_id),
                                         metadata=auth_metadata(stack.token("fault-admin", "admin")), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return list(reply.turns)


def count_stored(stack, *, user_id: str = "", session_id: str = "") -> int:
    try:
        turns = session_turns(stack, session_id) if session_id else stored_turns(stack, user_id)
    except grpc.RpcError:
        return -1
    return len({t.turn_id for t in turns})


async def assert_all_turns_stored(stack, sent: int, *, user_id: str = "", session_id: str = "",
                                  within_s: float = 60) -> None:
    """Turn logs lost must be 0: every completed turn reaches Conversations (eventually), none twice."""
    deadline = time.monotonic() + within_s
    got = -1
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(count_stored, stack, user_id=user_id, session_id=session_id)
        if got >= sent:
            break
        await asyncio.sleep(0.5)
    assert got == sent, f"{user_id or session_id}: {sent} turns completed but {got} stored in Conversations"


def turn_id(result) -> str:
    return next((f.get("turn_id", "") for f in result.frames if f.get("type") == "turn_complete"), "")


def progress_fingerprint(stack, user: str, level: str = "N5") -> str:
    """"<learned> of <total>" for the learner's words at a level, as the tutor phrases it."""
    words = own_progress(stack, user)["word"]["levels"]
    row = next(r for r in words if r["level"] == level)
    return f"{int(row.get('learned', 0))} of {int(row.get('total', 0))}"


# ---------------------------------------------------------------------- learner data

NUMBER = re.compile(r"\d[\d,]*")


def numbers_in(text: str) -> set[int]:
    return {int(m.replace(",", "")) for m in NUMBER.findall(text)}


def own_progress(stack, user: str) -> dict[str, Any]:
    """The learner's own progress figures straight from the tools service (what the answer may contain)."""
    from google.protobuf.json_format import MessageToDict

    from kotoba.v1 import tools_pb2, tools_pb2_grpc
    from services.common.auth import auth_metadata

    with grpc.insecure_channel(stack.addr("tools")) as ch:
        stub = tools_pb2_grpc.ToolsStub(ch)
        md = auth_metadata(stack.token(user))
        out = {}
        for entity in ("word", "kanji"):
            reply = stub.GetUserProgress(tools_pb2.GetUserProgressRequest(entity_type=entity), metadata=md, timeout=10)
            out[entity] = MessageToDict(reply, preserving_proto_field_name=True)
        ctx = stub.GetUserContext(tools_pb2.GetUserContextRequest(), metadata=md, timeout=10)
        out["context"] = MessageToDict(ctx, preserving_proto_field_name=True)
        return out


def all_numbers(obj: Any) -> set[int]:
    found: set[int] = set()
    if isinstance(obj, dict):
        for v in obj.values():
            found |= all_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= all_numbers(v)
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, (int, float)):
        found.add(int(obj))
    elif isinstance(obj, str) and obj.isdigit():
        found.add(int(obj))
    return found


# ---------------------------------------------------------------------- a TCP proxy that can be paused

class TcpProxy:
    """127.0.0.1:<port> → target, in its own thread and event loop, so a test can cut the link at will.

    `pause("refuse")` resets every open connection and every new one (like a host that is down);
    `pause("blackhole")` holds connections open and forwards nothing (like a partition: callers time out);
    `pause("hold")` forwards nothing until `release()`, then everything held (a slow service, answering late).
    """

    def __init__(self, target: str) -> None:
        host, port = target.replace("http://", "").rsplit(":", 1)
        self.target = (host, int(port))
        self.mode = "forward"
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self.connections = 0
        self.forwarded = 0  # connections passed on to the target

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def pause(self, mode: str = "refuse") -> None:
        assert mode in ("refuse", "blackhole", "hold")
        self.mode = mode

        def cut() -> None:
            for w in list(self._writers):
                if mode == "refuse":
                    w.transport.abort()
            if mode == "refuse":
                self._writers.clear()

        self._loop.call_soon_threadsafe(cut)

    def resume(self) -> None:
        def go() -> None:
            # Held (blackholed) connections are dead to their callers by now: drop them.
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
            self.mode = "forward"

        self._loop.call_soon_threadsafe(go)

    def release(self) -> None:
        """End a `hold`: what was held moves on, on the same connections."""
        self._loop.call_soon_threadsafe(setattr, self, "mode", "forward")

    def stop(self) -> None:
        def close() -> None:
            for w in list(self._writers):
                w.transport.abort()
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            return  # held until resume() aborts it
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        self.forwarded += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    while self.mode in ("blackhole", "hold"):  # noqa: ASYNC110 - set from another thread
                        await asyncio.sleep(0.05)  # stall mid-stream: nothing moves
                    if self.mode == "refuse" or dst.transport.is_closing():
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort() if self.mode != "forward" else dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


def mentions(text: str, fingerprint: str) -> bool:
    return re.search(rf"(?<!\d){re.escape(fingerprint)}(?!\d)", text) is not None
