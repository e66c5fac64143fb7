"""What the template and its renders say stands on its own: nothing points outside them."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from rendering import COMBINATIONS, TEMPLATE, combo_id, render

Renderer = Callable[[str, str], Path]

# References a reader can't follow or check: an internal contract and its sections, a
# machine's paths, a benchmark kit that doesn't ship, commit ids, words of a process (a
# "team machine"); a user's team, as in "what a team adds to the app", is fine.
OUTSIDE_REFERENCES = re.compile(
    r"(?-i:\bSPEC\b)|(?<!RFC \d{4} )§|\.\./shared|/work/|/tmp/b\b|/home/\w|\braw_limit\b"
    r"|\bseed_naive\b|\bthe issue\b|\btemplate team\b|\bteam(?:'s)? (?:machine|bench|folder)\b|\b(?:commit|at) [0-9a-f]{7,40}\b",
    re.IGNORECASE,
)
# The template ships its benchmark in bench/; a rendered project doesn't, so it can't point there.
RENDERED_OUTSIDE_REFERENCES = re.compile(OUTSIDE_REFERENCES.pattern + r"|\bbench/", re.IGNORECASE)
SKIP_PARTS = {"node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", ".git"}


def offenders(
    files: list[Path], root: Path, pattern: re.Pattern[str] = OUTSIDE_REFERENCES
) -> list[str]:
    """`path:line: match` for every `pattern` match (an outside reference) in `files`."""
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if match := pattern.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {match.group(0)!r}")
    return found


def test_the_pattern_catches_what_it_should() -> None:
    """The scan's pattern finds each kind of outside reference and spares look-alikes."""
    for bad in ("see SPEC §4", "/work/shared/x", "the team machine", "at commit 8fa48e6"):
        assert OUTSIDE_REFERENCES.search(bad), bad
    for fine in ("RFC 6455 §5.5", "channel team:admin", "as a team would", "specification"):
        assert not OUTSIDE_REFERENCES.search(fine), fine


def test_template_files_point_nowhere_outside() -> None:
    """No file the template repository tracks cites an internal contract, path or process."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    this_file = Path(__file__).resolve()
    files = [
        TEMPLATE / name
        for name in listed
        if (TEMPLATE / name).is_file() and (TEMPLATE / name).resolve() != this_file
    ]
    assert files
    assert not offenders(files, TEMPLATE)


@pytest.mark.parametrize(
    ("transport", "broadcaster"),
    [
        pytest.param(*c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_rendered_files_point_nowhere_outside(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """No rendered file cites anything a user of the project can't read in it."""
    project = rendered(transport, broadcaster)
    files = [p for p in project.rglob("*") if p.is_file() and not SKIP_PARTS & set(p.parts)]
    assert not offenders(files, project, RENDERED_OUTSIDE_REFERENCES)


@pytest.mark.parametrize(
    ("transport", "broadcaster"),
    [
        pytest.param(*c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_performance_doc_is_about_this_render(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """docs/performance.md names only the render's own options, and no unshipped tool."""
    text = (rendered(transport, broadcaster) / "docs" / "performance.md").read_text("utf-8")
    assert "loadtest" in text
    if transport == "sse":
        assert not re.search(r"websocket", text, re.IGNORECASE)
    if transport == "websocket":
        assert not re.search(r"\bSSE\b|Server-Sent", text)
    if broadcaster == "memory":
        assert not re.search(r"redis", text, re.IGNORECASE)
    # Every command it shows runs a module the project has: the service's (src/) or a
    # development tool's at the project root (the load tester).
    project = rendered(transport, broadcaster)
    for module in re.findall(r"python -m ([\w.]+)", text):
        path = Path(*module.split("."))
        assert any(
            (root / path).is_dir() or (root / path).with_suffix(".py").is_file()
            for root in (project / "src", project)
        ), module


def test_another_slug_leaves_no_trace_of_the_default(tmp_path: Path) -> None:
    """A project with its own slug never mentions the default one in any file."""
    project = render(tmp_path, project_name="Chat Relay", transport="both", broadcaster="redis")
    assert project.name == "chat_relay"
    files = [p for p in project.rglob("*") if p.is_file() and not SKIP_PARTS & set(p.parts)]
    mentions = [
        str(p.relative_to(project))
        for p in files
        if "realtime_service" in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert not mentions
