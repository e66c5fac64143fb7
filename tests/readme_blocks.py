"""Shell blocks of a README, and running them in order as a reader would.

A block is a fenced `bash` or `sh` block. An HTML comment right above it may say how a
test runs it, as `key=value` words:

- `skip reason="..."`: not run (the reason says why, and what covers it instead);
- `background`: a long-running command (a server, a listener), started and left running
  while the following blocks run, then stopped; `wait-url=URL` waits until URL answers
  200, `wait-output=TEXT` until TEXT appears in its output, `stdin=TEXT` is typed into it,
  and `final-output=TEXT` must be in its output once every block has run;
- `expect-output=TEXT`: TEXT must be in the block's output.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

BLOCK_RE = re.compile(
    r"(?:^<!-- readme-test: (?P<marks>.*?) -->\n)?^```(?P<lang>bash|sh)\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    """One shell block and how to run it."""

    code: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """Whether the README says this block is not run by a test."""
        return "skip" in self.marks

    @property
    def background(self) -> bool:
        """Whether the block is a long-running command."""
        return "background" in self.marks


def parse_marks(text: str) -> dict[str, str]:
    """`background wait-url=U` -> {"background": "", "wait-url": "U"}."""
    marks = {}
    for word in shlex.split(text):
        key, _, value = word.partition("=")
        marks[key] = value
    return marks


def shell_blocks(markdown: str) -> list[Block]:
    """Every bash/sh block of `markdown`, in order, with its marks."""
    return [
        Block(m.group("code"), parse_marks(m.group("marks") or ""))
        for m in BLOCK_RE.finditer(markdown)
    ]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


@dataclass
class Background:
    """A running background block, its output in a file."""

    block: Block
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What it printed so far (stdout and stderr)."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """End the block's whole process group (make, uvicorn's reloader, ...)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def run_blocks(
    blocks: list[Block], cwd: Path, env: Mapping[str, str], logs: Path
) -> Iterator[list[str]]:
    """Run `blocks` in order in fresh bash shells; yields the log of what ran.

    Background blocks stay up until the end and are stopped on the way out.
    """
    ran: list[str] = []
    running: list[Background] = []
    try:
        for number, block in enumerate(blocks):
            if block.skipped:
                continue
            if block.background:
                log = logs / f"block-{number}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        ["bash", "-c", block.code],
                        cwd=cwd,
                        env=dict(env),
                        stdin=subprocess.PIPE,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                job = Background(block, process, log)
                running.append(job)
                if text := block.marks.get("stdin"):
                    assert process.stdin is not None
                    process.stdin.write(text.encode() + b"\n")
                    process.stdin.flush()
                if url := block.marks.get("wait-url"):
                    wait_until(lambda url=url: _answers(url), 240, f"{url} ({block.code!r})")
                if text := block.marks.get("wait-output"):
                    wait_until(
                        lambda job=job, text=text: (
                            text in job.output() or job.process.poll() is not None
                        ),
                        60,
                        f"{text!r} from {block.code!r}",
                    )
                    assert text in job.output(), f"{block.code!r} printed:\n{job.output()}"
                ran.append(f"background: {block.code}")
                continue
            result = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", block.code],
                cwd=cwd,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, (
                f"{block.code!r} exited {result.returncode}:\n{result.stdout}"
            )
            if text := block.marks.get("expect-output"):
                assert text in result.stdout, f"{block.code!r} printed:\n{result.stdout}"
            ran.append(block.code)
        for job in running:
            if text := job.block.marks.get("final-output"):
                wait_until(lambda job=job, text=text: text in job.output(), 30, f"{text!r}")
        yield ran
    finally:
        for job in reversed(running):
            job.stop()
