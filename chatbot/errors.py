"""The chatbot layer's errors: each names what is wrong and maps to one gRPC status.

The server turns them into statuses (chatbot.server); nothing else crosses to a client,
so that no internal detail (a database URL, a hub token) can leak through an error.
"""

from __future__ import annotations

import grpc


class ChatbotError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ChatbotError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(ChatbotError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ChatbotError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ChatbotError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ChatbotError):
    code = grpc.StatusCode.UNAVAILABLE
