"""Graceful shutdown that doesn't wait for long-lived streams to end by themselves.

uvicorn waits for open HTTP responses before it runs lifespan shutdown, and an
event stream never ends by itself, so the service hears SIGTERM/SIGINT itself:
it chains the handler uvicorn installed (uvicorn still stops accepting and exits
as usual) and closes every connection. If anything still holds the process
after `SHUTDOWN_GRACE` seconds, it asks uvicorn for a forced exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], Any] | int | None


class ShutdownSignals:
    """Runs `on_shutdown` on the loop at the first SIGTERM/SIGINT, then passes the signal on."""

    def __init__(self, on_shutdown: Callable[[], None], grace: float) -> None:
        self._on_shutdown = on_shutdown
        self._grace = grace
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._force_timer: asyncio.TimerHandle | None = None
        self.triggered = False

    def install(self) -> None:
        """Chain our handler in front of the current one (uvicorn's)."""
        if threading.current_thread() is not threading.main_thread():
            return  # e.g. an in-process test client; signals only reach the main thread
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put the previous handlers back."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
        if self._force_timer is not None:
            self._force_timer.cancel()

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        if not self.triggered and self._loop is not None:
            self.triggered = True
            self._loop.call_soon_threadsafe(self._begin)
        previous = self._previous.get(sig)
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt if sig == signal.SIGINT else SystemExit(128 + sig)

    def _begin(self) -> None:
        logger.info("shutting down: closing every connection")
        self._on_shutdown()
        assert self._loop is not None
        # Leave a margin inside the grace period for the process to exit.
        self._force_timer = self._loop.call_later(max(self._grace - 0.5, 0.1), self._force_exit)

    def _force_exit(self) -> None:
        previous = self._previous.get(signal.SIGINT)
        if callable(previous):
            logger.warning("connections still open after SHUTDOWN_GRACE; forcing exit")
            # A second SIGINT is uvicorn's own "force quit".
            previous(signal.SIGINT, None)
