"""The HTTP server's own limits (uvicorn): a connection must send a whole request head within
HEADERS_TIMEOUT_S or it is closed, idle keep-alive connections close after a few seconds, at
most MAX_CONNECTIONS are served at once, and a flood of the same warning is logged once a
minute with its count, not once per connection.

Measured before: with 64 file descriptors, 56 idle sockets stopped /health and made 80 MB of
log in 25 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADERS_TIMEOUT_S = 5.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 32
log = logging.getLogger("trackside.agent.server")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (slow or silent clients
    are cut off; the body's own deadline is the API guard's)."""

    _head_deadline: asyncio.TimerHandle | None = None
    closed_slow = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(HEADERS_TIMEOUT_S, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timeout(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self.conn.their_state in (h11.IDLE, h11.SEND_RESPONSE, h11.DONE):
            GuardedH11Protocol.closed_slow += 1
            log.warning(
                "closing connections that sent no request within %gs (%d so far)",
                HEADERS_TIMEOUT_S,
                GuardedH11Protocol.closed_slow,
            )
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class OnceAMinute(logging.Filter):
    """The first of a run of identical messages, then one a minute saying how many."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (0.0, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like it in the last minute)"
        self._seen[key] = (now, 0)
        return True


def quiet_floods() -> None:
    flood = OnceAMinute()
    # asyncio logs every failed accept() (10k a second once file descriptors run out).
    for name in ("uvicorn.error", "asyncio", "trackside.agent.server"):
        logging.getLogger(name).addFilter(flood)


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the agent handles SIGTERM and SIGINT itself, and flushes before it stops


def server(app: Any, host: str, port: int) -> Server:
    quiet_floods()
    return Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=GuardedH11Protocol,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=16 << 10,
        )
    )
