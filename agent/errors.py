"""The one error base of the agent's API: a status and a sentence that says what failed and
what to do. Raised anywhere behind the API (controller, rollouts, replay, the request log);
one handler (agent/api/__init__.py) turns it into `{"detail": ...}` with that status."""

from __future__ import annotations


class ApiError(Exception):
    """An answer the agent gives instead of a result: 4xx for the caller's fault or a
    conflict with the state, 502 when Ray Serve refused or failed a change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


class Invalid(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, message)
