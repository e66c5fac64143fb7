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
    """Rewrites a record whose message carries a token, before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


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
