"""Loaded by cookiecutter from this template (`_extensions` in cookiecutter.json).

When `hooks/pre_gen_project.py` refuses an answer it prints one line naming the field
and exits 1. cookiecutter then logs the failed hook with its own traceback, which buries
that line and says nothing more; this extension keeps the log record's message and
drops the traceback, for failed hooks only.
"""

from __future__ import annotations

import logging

from cookiecutter.exceptions import FailedHookException
from jinja2 import Environment
from jinja2.ext import Extension


class _DropFailedHookTraceback(logging.Filter):
    """Strips the traceback from records about a hook that exited non-zero."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FailedHookException):
            record.exc_info = None
            record.exc_text = None
        return True


class RefusedAnswersInOneLine(Extension):
    """Installs the filter on cookiecutter's hook logger when the template is loaded."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        logger = logging.getLogger("cookiecutter.hooks")
        if not any(isinstance(f, _DropFailedHookTraceback) for f in logger.filters):
            logger.addFilter(_DropFailedHookTraceback())
