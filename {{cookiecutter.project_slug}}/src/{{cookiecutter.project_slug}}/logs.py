"""Logging setup, with tokens kept out of every log line (access logs included)."""

from __future__ import annotations

import logging
import re

# `token=<jwt>` in a query string, the name spelled plainly or percent-encoded
# (`%74oken=` is the same parameter once decoded); also the bare JWT shape,
# wherever it appears (an `Authorization` header inside a logged ASGI scope).
_TOKEN_QUERY_RE = re.compile(
    r"(?i)((?<![\w%])(?:t|%[57]4)(?:o|%[46]f)(?:k|%[46]b)(?:e|%[46]5)(?:n|%[46]e)=)[^&\s\"']*"
)
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
        record.msg = _clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        if record.exc_info and not record.exc_text:
            # Formatted here, once, so that the traceback's text is cleaned too.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _clean(value: object) -> object:
    """`value` with tokens redacted; anything else keeps its type.

    Not only strings: uvicorn's `trace` level logs the whole ASGI scope (query
    string and headers as bytes) as one dict argument. Such a value is replaced
    by its redacted text only when it held a token, so `%d` and friends still
    get their numbers.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


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
