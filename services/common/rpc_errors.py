"""How a servicer's failures reach the caller: a typed gRPC status with a message, never a stack trace."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)
Resp = TypeVar("Resp")


class StatusError(Exception):
    """A domain error that becomes this gRPC status and message (the model may repeat it to the learner)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def store_errors(unavailable: str) -> Callable[[Callable[..., Awaitable[Resp]]], Callable[..., Awaitable[Resp]]]:
    """Decorate a servicer method: StatusError → its status; a value DynamoDB refuses → INVALID_ARGUMENT; any
    other DynamoDB failure → UNAVAILABLE (retryable) with `unavailable` as the message, never an opaque UNKNOWN."""

    def decorate(handler: Callable[..., Awaitable[Resp]]) -> Callable[..., Awaitable[Resp]]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Resp:
            try:
                return await handler(self, request, context)
            except StatusError as exc:
                await context.abort(exc.code, exc.message)
            except (ClientError, BotoCoreError) as exc:
                log.warning("store call failed", extra={"rpc": handler.__name__, "error": str(exc)})
                if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ValidationException":
                    # DynamoDB refused a value from the request (a key too long, say): retrying cannot help.
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a value in the request is not acceptable "
                                        "(too long or malformed); check the ids and text sent")
                await context.abort(grpc.StatusCode.UNAVAILABLE, unavailable)
            raise AssertionError("unreachable: context.abort raises")

        return wrapper

    return decorate
