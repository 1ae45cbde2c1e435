"""Grounded context for a text turn: Retrieval.Search under a tight deadline, or an 'unavailable' marker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.genai import types
from google.protobuf.json_format import MessageToDict

from kotoba.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.common.auth import auth_metadata
from services.common.contracts import KOTOBA_CONTEXT, format_block

log = logging.getLogger(__name__)

UNAVAILABLE_BLOCK = format_block(KOTOBA_CONTEXT, {"items": [], "unavailable": True})


@dataclass
class Retrieved:
    items: list[dict[str, Any]] = field(default_factory=list)
    available: bool = False
    latency_ms: float = 0.0
    error: str = ""

    @property
    def item_ids(self) -> list[str]:
        """Ids of the retrieved study items, for the turn record."""
        return [i["id"] for i in self.items if "id" in i]


def hit_dicts(response: retrieval_pb2.SearchResponse) -> list[dict[str, Any]]:
    """Search hits as plain dicts with rounded scores."""
    out = []
    for hit in response.hits:
        item = MessageToDict(hit.item, preserving_proto_field_name=True)
        item["score"] = round(float(hit.score), 4)
        out.append(item)
    return out


async def search(stub: retrieval_pb2_grpc.RetrievalStub, token: str, query: str, *, deadline_s: float,
                 top_k: int, learner_level: str = "", types_: list[str] | None = None,
                 levels: list[str] | None = None) -> Retrieved:
    """Never raises: a slow or failed search returns Retrieved(available=False)."""
    started = time.perf_counter()
    request = retrieval_pb2.SearchRequest(query=query[:512], top_k=top_k, learner_level=learner_level,
                                          types=types_ or [], levels=levels or [])
    try:
        response = await stub.Search(request, timeout=deadline_s, metadata=auth_metadata(token))
    except grpc.aio.AioRpcError as exc:
        latency = (time.perf_counter() - started) * 1000
        log.info("retrieval unavailable for this turn", extra={"code": exc.code().name, "ms": round(latency, 1)})
        return Retrieved(available=False, latency_ms=latency, error=exc.code().name)
    return Retrieved(hit_dicts(response), True, (time.perf_counter() - started) * 1000)


def context_block(retrieved: Retrieved) -> str:
    """The retrieved items as prompt context, or a note that retrieval was unavailable."""
    if not retrieved.available:
        return UNAVAILABLE_BLOCK
    return format_block(KOTOBA_CONTEXT, {"items": retrieved.items})


def user_turn(retrieved: Retrieved, text: str) -> types.Content:
    """One user Content: the context block first, the learner's words last (the engine relies on the order)."""
    return types.Content(role="user", parts=[types.Part(text=context_block(retrieved)), types.Part(text=text)])
