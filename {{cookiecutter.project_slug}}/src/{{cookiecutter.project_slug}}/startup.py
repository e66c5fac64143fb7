"""Process-wide startup steps: everything the service changes beyond its own app.

An app is one object; `create_app()` may build many in one process (the tests
do). These steps change the whole process instead, so each is named here, runs
from one place in `main.py`, and is safe to repeat:

1. `configure_process_logging(settings)`, when an app is built: the
   token-redacting filter on the root logger, uvicorn's loggers and their
   handlers (so access lines never carry a token), and with `LOG_FORMAT=json`
   the JSON formatter on every handler plus logged uncaught exceptions. A
   filter already in place is not added twice.
2. `freeze_startup_objects()`, when the first app has started: moves
   everything allocated so far (modules, routes, models: they live as long as
   the process) into the garbage collector's permanent generation, so that no
   full collection rescans them; a full collection runs every few seconds under
   fan-out load. Only the first call in a process freezes: the objects of apps
   built later in the same process (tests) stay collectable.
3. `collect_young_objects_less_often()`, right after: raises the collector's
   young-generation threshold to `YOUNG_GC_THRESHOLD` allocations (CPython's
   default is 700 on 3.11 to 3.13). Every delivery allocates a few
   short-lived containers (the ASGI message, a coroutine, a waiter future);
   at the default, a young collection runs every few hundred deliveries, and
   the waiter futures of idle writers that it catches alive are promoted until
   a full collection, which walks every open connection's objects, runs every
   few seconds. A threshold already set higher is kept; to choose your own,
   call `gc.set_threshold()` after startup.
4. `allow_open_files(settings.max_connections)`, when an app starts: raises
   the process's soft limit on open files to its hard limit (as Go's runtime
   does), since every connection is a socket and many systems start processes
   at 1,024. Only the hard limit (`ulimit -Hn`, Docker's `--ulimit nofile`,
   systemd's `LimitNOFILE`) is the operator's; when it is too low for
   `MAX_CONNECTIONS`, the service says so in one warning at startup.
"""

from __future__ import annotations

import contextlib
import gc

from . import jsonlogs
from .logs import configure_logging
from .settings import Settings

# Allocations between young collections: enough that a fan-out to thousands of
# subscribers doesn't trigger one every few hundred deliveries.
YOUNG_GC_THRESHOLD = 50_000

# Files a worker opens besides its clients' sockets: the listening socket, the
# event loop's, log files, broadcaster and metrics connections.
SPARE_FILES = 64

_frozen = False


def configure_process_logging(settings: Settings) -> None:
    """Step 1: log level, token redaction and (on request) JSON lines, process-wide."""
    configure_logging(settings.log_level)
    if settings.log_format == "json":
        jsonlogs.use_json_lines()


def freeze_startup_objects() -> bool:
    """Step 2: freeze what startup allocated, once per process; whether this call did."""
    global _frozen
    if _frozen:
        return False
    gc.collect()
    gc.freeze()
    _frozen = True
    return True


def collect_young_objects_less_often() -> None:
    """Step 3: raise the young generation's threshold to `YOUNG_GC_THRESHOLD`, never lower it."""
    young, *older = gc.get_threshold()
    if young < YOUNG_GC_THRESHOLD:
        gc.set_threshold(YOUNG_GC_THRESHOLD, *older)


def raise_open_files_limit(wanted: int) -> int | None:
    """Raise this process's soft limit on open files to the hard one (to `wanted` or
    more when the hard one is unlimited); the soft limit now, None when unlimited or
    on a system without such limits (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    target = max(soft, wanted) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def allow_open_files(max_connections: int) -> str | None:
    """Step 4: raise the soft limit on open files to the hard one; a warning if still too low."""
    wanted = max_connections + SPARE_FILES
    soft = raise_open_files_limit(wanted)
    if soft is not None and soft < wanted:
        return (
            f"this process may open {soft:,} files, too few for MAX_CONNECTIONS="
            f"{max_connections:,} (a socket each): raise the hard limit (ulimit -Hn) "
            f"to {wanted:,} or more, or lower MAX_CONNECTIONS"
        )
    return None
