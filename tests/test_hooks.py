"""The hooks: answers are validated before anything is written, and projects are shaped right."""

from __future__ import annotations

import ast
import json
import sys
import tomllib
from pathlib import Path

import pytest
from rendering import TEMPLATE, render, run
from test_choices import load_hook

pre_gen = load_hook("pre_gen_project")


@pytest.mark.parametrize(
    ("slug", "rule"),
    [
        ("My_Service", "lowercase Python identifier"),
        ("9lives", "lowercase Python identifier"),
        ("my-service", "lowercase Python identifier"),
        ("", "lowercase Python identifier"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("redis", "shadow"),
        ("fastapi", "shadow"),
        ("jwt", "shadow"),
        ("asyncio", "shadow"),
        ("test", "shadow"),
        ("tests", "shadow"),
    ],
)
def test_pre_gen_rejects_bad_slugs(slug: str, rule: str) -> None:
    """A slug that isn't a usable package name is refused with the rule it breaks."""
    errors = pre_gen.validate({"project_slug": slug, "heartbeat_interval": "15"})
    assert len(errors) == 1
    assert "project_slug" in errors[0] and rule in errors[0]


@pytest.mark.parametrize("interval", ["0", "-1", "abc", "", "nan", "inf", "-0.5"])
def test_pre_gen_rejects_bad_heartbeat_intervals(interval: str) -> None:
    """A heartbeat interval that isn't a positive number of seconds is refused."""
    errors = pre_gen.validate({"project_slug": "ok_service", "heartbeat_interval": interval})
    assert len(errors) == 1
    assert "heartbeat_interval" in errors[0] and "greater than 0" in errors[0]


@pytest.mark.parametrize("interval", ["15", "0.25", " 30 ", "1e1"])
def test_pre_gen_accepts_good_answers(interval: str) -> None:
    """Valid answers pass untouched."""
    assert pre_gen.validate({"project_slug": "chat_service", "heartbeat_interval": interval}) == []


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ("project_slug=redis", "project_slug"),
        ("project_slug=Bad-Name", "project_slug"),
        ("heartbeat_interval=0", "heartbeat_interval"),
        ("heartbeat_interval=soon", "heartbeat_interval"),
    ],
)
def test_rejected_answers_print_one_line_and_write_nothing(
    tmp_path: Path, answer: str, field: str
) -> None:
    """cookiecutter exits non-zero, the hook's line names the field (no traceback), no file is left."""
    out = tmp_path / "out"
    result = run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(out), str(TEMPLATE), answer],
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0
    hook_lines = [line for line in result.stdout.splitlines() if line.startswith(f"ERROR: {field}")]
    assert len(hook_lines) == 1, result.stdout
    assert "Traceback" not in result.stdout
    assert not out.exists() or not any(out.iterdir())


FREE_TEXT = 'Zoë\'s "Quoted" \\ Service\nwith a second line — ünïcödé ☃'


def test_free_text_answers_render_valid_code_and_config(tmp_path: Path) -> None:
    """Quotes, backslashes, newlines and non-ASCII in free text can't break the project."""
    project = render(
        tmp_path,
        project_name=FREE_TEXT,
        project_slug="odd_names",
        description=FREE_TEXT,
    )
    for source in project.rglob("*.py"):
        ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == FREE_TEXT
    init = (project / "src" / "odd_names" / "__init__.py").read_text(encoding="utf-8")
    namespace: dict[str, object] = {}
    exec(compile(init, "__init__.py", "exec"), namespace)
    assert namespace["PROJECT_NAME"] == FREE_TEXT
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["project_name"] == FREE_TEXT


@pytest.mark.parametrize("slug", ["aaa_service", "zzz_service"])
def test_any_slug_renders_lint_clean_code(tmp_path: Path, slug: str) -> None:
    """Import order and formatting don't depend on where the slug sorts."""
    project = render(tmp_path, project_slug=slug)
    for args in (["check", "."], ["format", "--check", "."]):
        result = run([sys.executable, "-m", "ruff", *args], project, timeout=60)
        assert result.returncode == 0, result.stdout


def test_answers_are_recorded_without_cookiecutter_internals(tmp_path: Path) -> None:
    """`.cookiecutter.json` holds exactly the prompt answers, for re-rendering later."""
    project = render(tmp_path, transport="sse", broadcaster="redis", heartbeat_interval="7")
    answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert not [key for key in answers if key.startswith("_")]
    assert answers["transport"] == "sse"
    assert answers["broadcaster"] == "redis"
    assert answers["heartbeat_interval"] == "7"
    assert answers["project_slug"] == "realtime_service"


def test_each_render_gets_its_own_secret(tmp_path: Path) -> None:
    """Two renders never share a JWT secret, and `.env` is git-ignored."""
    secrets = []
    for name in ("first", "second"):
        project = render(tmp_path / name)
        lines = (project / ".env").read_text().splitlines()
        (secret,) = [line.split("=", 1)[1] for line in lines if line.startswith("JWT_SECRET=")]
        assert len(secret) >= 48
        secrets.append(secret)
        assert ".env" in (project / ".gitignore").read_text().splitlines()
    assert secrets[0] != secrets[1]


def test_post_gen_removes_exactly_the_unchosen_paths(tmp_path: Path) -> None:
    """The table-driven cleanup keeps the chosen option's files and drops the others'."""
    post_gen = load_hook("post_gen_project")
    (tmp_path / "src" / "pkg" / "transports").mkdir(parents=True)
    for name in ("sse.py", "websocket.py"):
        (tmp_path / "src" / "pkg" / "transports" / name).write_text("")
    post_gen.remove_unused_paths(tmp_path, {"transport": "sse", "broadcaster": "memory"})
    assert (tmp_path / "src" / "pkg" / "transports" / "sse.py").exists()
    assert not (tmp_path / "src" / "pkg" / "transports" / "websocket.py").exists()
