"""Domain errors carrying the gRPC status and a message the model can repeat to the learner."""

from __future__ import annotations

import grpc


class ToolError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ToolError:
    return ToolError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ToolError:
    return ToolError(grpc.StatusCode.NOT_FOUND, message)
