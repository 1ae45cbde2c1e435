"""Function-call bridge: a model's toolCall → parallel gRPC calls with the learner's token → toolResponse.

Every call id gets exactly one response (a structured error if need be), so a
turn never stalls waiting on a function. Identity travels only in the token;
arguments such as `user_id` are dropped by ParseDict(ignore_unknown_fields).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.genai import types
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from kotoba.v1 import retrieval_pb2, tools_pb2
from services.common import metrics
from services.common.auth import auth_metadata
from services.common.telemetry import tracer
from services.gateway.backends import Backends
from services.gateway.rag import hit_dicts
from services.tools.declarations import SEARCH_DICTIONARY

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

CANCELLED = "CANCELLED"


def _declarations_module():
    from services.tools import declarations  # owned by the tools service: the single source

    return declarations


def function_declarations(voice: bool) -> list[dict[str, Any]]:
    """The tools the model may call; voice sessions also get the dictionary search."""
    decls = list(_declarations_module().FUNCTION_DECLARATIONS)
    if voice:
        decls.append(SEARCH_DICTIONARY)
    return decls


def genai_tools(decls: Iterable[dict[str, Any]]) -> list[types.Tool]:
    """Convert tool declarations into google-genai tools."""
    out = []
    for d in decls:
        try:
            params = types.Schema.model_validate(d.get("parameters") or {"type": "object", "properties": {}})
            out.append(types.FunctionDeclaration(name=d["name"], description=d.get("description", ""),
                                                 parameters=params))
        except ValueError:
            # A schema keyword Schema does not model: send the JSON schema as is.
            out.append(types.FunctionDeclaration(name=d["name"], description=d.get("description", ""),
                                                 parameters_json_schema=d.get("parameters")))
    return [types.Tool(function_declarations=out)]


@dataclass
class CallRecord:
    """One function call as it goes into the turn log."""

    id: str
    name: str
    args: dict[str, Any]
    response: dict[str, Any]
    latency_ms: float

    @property
    def error(self) -> str:
        """The error code the tool returned, or ""."""
        err = self.response.get("error")
        return err.get("code", "") if isinstance(err, dict) else ""


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ToolBridge:
    def __init__(self, backends: Backends, deadline_s: float) -> None:
        self.backends = backends
        self.deadline_s = deadline_s
        self.rpc_for_function: dict[str, str] = dict(_declarations_module().RPC_FOR_FUNCTION)

    def _request_class(self, rpc: str):
        method = tools_pb2.DESCRIPTOR.services_by_name["Tools"].methods_by_name[rpc]
        return getattr(tools_pb2, method.input_type.name)

    async def call(self, name: str, args: dict[str, Any], token: str) -> dict[str, Any]:
        """One function call → the response object sent back to the model. Never raises."""
        with _tracer.start_as_current_span(metrics.SPAN_TOOL, attributes={"tool": name}) as span, \
                metrics.Timer(metrics.tool_latency, {"tool": name if self._known(name) else "unknown"}) as timer:
            response = await self._call(name, args, token)
            err = response.get("error")
            code = err.get("code", "INTERNAL") if isinstance(err, dict) else ""
            span.set_attribute("outcome", "error" if code else "ok")
            timer.attributes["outcome"] = "error" if code else "ok"
            if code:
                span.set_attribute("code", code)
                timer.attributes["code"] = code
            return response

    def _known(self, name: str) -> bool:
        return name == "search_dictionary" or name in self.rpc_for_function

    async def _call(self, name: str, args: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            if name == "search_dictionary":
                return await self._search_dictionary(args, token)
            rpc = self.rpc_for_function.get(name)
            if rpc is None:
                return _error("NOT_FOUND", f"there is no function called {name}")
            try:
                request = ParseDict(args or {}, self._request_class(rpc)(), ignore_unknown_fields=True)
            except (ParseError, TypeError, ValueError) as exc:
                return _error("INVALID_ARGUMENT", f"bad arguments for {name}: {exc}")
            response = await getattr(self.backends.tools, rpc)(
                request, timeout=self.deadline_s, metadata=auth_metadata(token))
            return {"result": MessageToDict(response, preserving_proto_field_name=True)}
        except grpc.aio.AioRpcError as exc:
            return _error(exc.code().name, exc.details() or exc.code().name)
        except Exception as exc:  # noqa: BLE001 - the model must get an answer for every call id
            log.exception("tool call failed", extra={"tool": name})
            return _error("INTERNAL", f"{name} failed: {type(exc).__name__}")

    async def _search_dictionary(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        query = str(args.get("query") or "").strip()
        if not query:
            return _error("INVALID_ARGUMENT", "search_dictionary needs a query")
        try:
            top_k = max(1, min(20, int(args.get("top_k") or 5)))
        except (TypeError, ValueError):
            top_k = 5
        types_ = [str(t) for t in args.get("types") or [] if isinstance(t, str)]
        levels = [str(t) for t in args.get("levels") or [] if isinstance(t, str)]
        request = retrieval_pb2.SearchRequest(query=query[:512], top_k=top_k, types=types_, levels=levels)
        response = await self.backends.retrieval.Search(request, timeout=self.deadline_s,
                                                        metadata=auth_metadata(token))
        return {"result": {"hits": hit_dicts(response)}}

    async def run(self, calls: list[types.FunctionCall], token: str,
                  running: dict[str, asyncio.Task] | None = None) -> list[CallRecord]:
        """All calls of one toolCall in parallel; records in the order of the calls. Each call's task is
        listed in `running` under its id while it runs, so a toolCallCancellation can withdraw it; a
        withdrawn call gets a CANCELLED record (for the turn log) and no response is owed for it."""
        running = {} if running is None else running
        tasks: list[tuple[types.FunctionCall, asyncio.Task]] = []
        for fc in calls:
            fc.id = fc.id or uuid.uuid4().hex
            task = asyncio.create_task(self._timed(fc, token))
            running[fc.id] = task
            tasks.append((fc, task))
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
        records = []
        for fc, task in tasks:
            running.pop(fc.id or "", None)
            records.append(CallRecord(fc.id or "", fc.name or "", dict(fc.args or {}),
                                      _error(CANCELLED, "cancelled"), 0) if task.cancelled() else task.result())
        return records

    async def _timed(self, fc: types.FunctionCall, token: str) -> CallRecord:
        started = time.perf_counter()
        response = await self.call(fc.name or "", dict(fc.args or {}), token)
        return CallRecord(fc.id or "", fc.name or "", dict(fc.args or {}), response,
                          (time.perf_counter() - started) * 1000)


def function_responses(records: list[CallRecord]) -> list[types.FunctionResponse]:
    """The toolResponse for a fan-out: every call the model still waits for (withdrawn calls left out)."""
    return [types.FunctionResponse(id=r.id, name=r.name, response=r.response) for r in records
            if r.error != CANCELLED]
