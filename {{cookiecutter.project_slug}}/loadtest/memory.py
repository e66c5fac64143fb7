"""The service's resident memory, read from `/proc` (Linux) for `--server-pid`."""

from __future__ import annotations

from pathlib import Path

from .http import LoadTestError

PROC = Path("/proc")


def resident_bytes(pid: int) -> int:
    """Resident memory of process `pid` and every process under it (a server's workers)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += _vm_rss(current)
        except FileNotFoundError:
            if current == pid:
                raise LoadTestError(f"--server-pid {pid}: no such process") from None
            continue  # a worker that ended meanwhile
        pending.extend(_children(current))
    return total


def _vm_rss(pid: int) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel writes kB
    return 0  # a zombie has no memory left


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            children.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ValueError):
            continue
    return children


def check_readable(pid: int) -> None:
    """`LoadTestError` unless `pid`'s memory can be read here."""
    if not PROC.is_dir():
        raise LoadTestError("--server-pid needs /proc (Linux): run on the service's machine")
    resident_bytes(pid)
