"""Safe by default: no well-known secret starts a service, and the next steps are printed."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from rendering import COMBINATIONS, TEMPLATE, combo_id, project_env, run
from test_choices import load_hook

Renderer = Callable[[str, str], Path]
SLUG = "realtime_service"


@pytest.mark.timeout(60)
def test_the_example_env_does_not_start_the_service(rendered: Renderer, tmp_path: Path) -> None:
    """Starting with a copy of `.env.example` fails with one line naming JWT_SECRET."""
    project = rendered("both", "memory")
    (tmp_path / ".env").write_text((project / ".env.example").read_text("utf-8"), "utf-8")
    env = project_env(project)
    env.pop("JWT_SECRET", None)
    result = run(
        [sys.executable, "-m", "uvicorn", f"{SLUG}.main:app", "--port", "0"],
        tmp_path,
        env=env,
        timeout=30,
    )
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if "JWT_SECRET" in line]
    assert len(lines) == 1 and "placeholder" in lines[0], result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize(
    ("transport", "broadcaster"),
    [
        pytest.param(*c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_compose_runs_without_an_env_file(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """compose.yaml reads `.env` when there is one and doesn't require it (fresh clones)."""
    compose = yaml.safe_load((rendered(transport, broadcaster) / "compose.yaml").read_text())
    assert compose["services"]["app"]["env_file"] == [{"path": ".env", "required": False}]


def test_next_steps_name_env_token_compose_and_pre_commit(tmp_path: Path) -> None:
    """The message after rendering says where the secret is and what to run next."""
    out = tmp_path / "out"
    result = run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(out), str(TEMPLATE)],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    for needle in (
        ".env",
        "JWT_SECRET",
        f"-m {SLUG} token",
        "docker compose up",
        "git init && pre-commit install",
        "make install",
    ):
        assert needle in result.stdout, needle


def test_post_gen_never_replaces_an_existing_env(tmp_path: Path) -> None:
    """`write_env` leaves a `.env` that is already there byte for byte."""
    post_gen = load_hook("post_gen_project")
    (tmp_path / ".env").write_text("JWT_SECRET=mine\n", encoding="utf-8")
    assert post_gen.write_env(tmp_path) is False
    assert (tmp_path / ".env").read_text(encoding="utf-8") == "JWT_SECRET=mine\n"
    assert "kept" in post_gen.next_steps("svc", wrote_env=False)


@pytest.mark.parametrize("email", ["not an email", "a@b", "x@y@z.org", "Zoë <z@x.org>"])
def test_pre_gen_rejects_a_bad_author_email(email: str) -> None:
    """An author email that isn't an address is refused, naming the field."""
    pre_gen = load_hook("pre_gen_project")
    context = {"project_slug": "ok_service", "heartbeat_interval": "15", "author_email": email}
    errors = pre_gen.validate(context)
    assert len(errors) == 1 and errors[0].startswith("author_email")


def test_pre_gen_rejects_an_empty_author_name() -> None:
    """The copyright holder can't be blank."""
    pre_gen = load_hook("pre_gen_project")
    context = {"project_slug": "ok_service", "heartbeat_interval": "15", "author_name": " "}
    assert pre_gen.validate(context) == [
        "author_name must not be empty: it is the copyright holder"
    ]
