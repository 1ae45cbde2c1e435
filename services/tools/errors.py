"""Domain errors carrying the gRPC status and a message the model can repeat to the learner."""

from __future__ import annotations

import grpc

from services.common.rpc_errors import StatusError


class ToolError(StatusError):
    """A tool call the learner or model got wrong (bad argument, unknown item, no right)."""


def invalid(message: str) -> ToolError:
    """A tool error answered as INVALID_ARGUMENT."""
    return ToolError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ToolError:
    """A tool error answered as NOT_FOUND."""
    return ToolError(grpc.StatusCode.NOT_FOUND, message)
