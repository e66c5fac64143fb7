"""`LOG_FORMAT=json`: every log line, uvicorn's included, as one JSON object.

Each line has `ts` (UTC, ISO 8601), `level`, `logger` and `message`, then
context: the request of an access log line (`client`, `method`, `path`,
`status`), fields passed with `extra=`, and `exception` (the traceback, as one
string). The finished line goes through the token redaction once more, so a
token in an exception or an `extra` field never reaches the output either.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from .logs import redact

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# uvicorn's copy of the message with terminal colours: noise in JSON.
_SKIPPED = frozenset({"color_message"})
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access line: (client, method, path, http version, status).
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=False))
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in _SKIPPED:
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def line(level: str, logger: str, message: str) -> str:
    """One JSON log line written without a logger (before logging is set up)."""
    record = logging.LogRecord(logger, logging.getLevelName(level), "", 0, message, None, None)
    return JsonFormatter().format(record)


def requested() -> bool:
    """Whether the environment asks for JSON logs (before settings could be read)."""
    return os.environ.get("LOG_FORMAT", "").strip().lower() == "json"


def use_json_lines() -> None:
    """Give every handler installed so far (the root's, uvicorn's) the JSON formatter.

    Python warnings and uncaught exceptions (main thread and others) would
    otherwise be printed as plain text: they are logged instead.
    """
    formatter = JsonFormatter()
    for handler in _all_handlers():
        handler.setFormatter(formatter)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        log for log in logging.Logger.manager.loggerDict.values() if isinstance(log, logging.Logger)
    ]
    return [handler for log in loggers for handler in log.handlers]


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    thread = args.thread.name if args.thread else "?"
    logging.getLogger("uncaught").critical(
        "uncaught exception in thread %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
