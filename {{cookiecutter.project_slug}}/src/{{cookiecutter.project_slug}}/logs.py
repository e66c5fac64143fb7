"""Logging setup, with tokens kept out of every log line (access logs included)."""

from __future__ import annotations

import logging
import re

# `token=<jwt>` in a query string; also the bare JWT shape, wherever it appears.
_TOKEN_QUERY_RE = re.compile(r"(?i)(\btoken=)[^&\s\"']*")
_JWT_RE = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with token values replaced by a placeholder."""
    return _JWT_RE.sub(REDACTED, _TOKEN_QUERY_RE.sub(r"\1" + REDACTED, text))


class RedactTokens(logging.Filter):
    """Rewrites a record's message and arguments so no token reaches a handler.

    Arguments are cleaned one by one, not merged into the message: uvicorn's
    access formatter reads them individually.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        return True


def _clean(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "websockets")


def configure_logging(level: str) -> None:
    """Set the app's log level and install the token filter.

    Filters on a logger don't see records that propagate from its children, so
    the filter goes on the loggers that uvicorn writes to and on their handlers.
    """
    logging.getLogger(__package__).setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s:     %(name)s - %(message)s")
    for name in _LOGGERS:
        log = logging.getLogger(name)
        _add_once(log)
        for handler in log.handlers:
            _add_once(handler)


def _add_once(target: logging.Filterer) -> None:
    if not any(isinstance(f, RedactTokens) for f in target.filters):
        target.addFilter(RedactTokens())
