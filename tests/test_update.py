"""A generated project can be re-rendered and updated without losing its `.env` or its edits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter
from rendering import TEMPLATE, copy_template, render, run

SLUG = "realtime_service"


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity; its stdout."""
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def template_repo(root: Path) -> Path:
    """A git repository holding this template's files, one commit."""
    repo = copy_template(root / "template")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "template at the project's start")
    return repo


def cruft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run cruft from this suite's environment."""
    return run([sys.executable, "-m", "cruft", *args], cwd)


def test_rerendering_keeps_the_env_file(tmp_path: Path) -> None:
    """Rendering again over a project with `-f` leaves its `.env` (and secret) alone."""
    project = render(tmp_path, transport="sse", broadcaster="memory")
    env = project / ".env"
    env.write_text(env.read_text(encoding="utf-8") + "LOG_LEVEL=DEBUG\n", encoding="utf-8")
    before = env.read_text(encoding="utf-8")
    again = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(tmp_path),
        extra_context={"transport": "sse", "broadcaster": "memory"},
        overwrite_if_exists=True,
    )
    assert Path(again) == project
    assert env.read_text(encoding="utf-8") == before


@pytest.mark.timeout(300)
def test_cruft_update_merges_template_changes_and_keeps_edits(tmp_path: Path) -> None:
    """cruft create at one commit, edit, cruft update to a later one: no .rej, nothing lost."""
    repo = template_repo(tmp_path)
    out = tmp_path / "out"
    created = cruft(
        "create",
        str(repo),
        "--no-input",
        "--output-dir",
        str(out),
        "--extra-context",
        json.dumps({"transport": "both", "broadcaster": "memory"}),
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stdout
    project = out / SLUG
    secret = (project / ".env").read_text(encoding="utf-8")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "start from the template")

    # The user's edits: a section of their own in the README, a line in a module.
    readme = project / "README.md"
    readme.write_text(readme.read_text("utf-8") + "\n## Our notes\n\nKeep this.\n", "utf-8")
    events = project / "src" / SLUG / "events.py"
    events.write_text("# our marker line\n" + events.read_text("utf-8"), "utf-8")
    git(project, "commit", "-qam", "our edits")

    # The template moves on: other lines of the same README, and another file.
    template_readme = repo / "{{cookiecutter.project_slug}}" / "README.md"
    text = template_readme.read_text("utf-8")
    template_readme.write_text(
        text.replace("## Features\n", "## Features\n\n- New in the template.\n", 1), "utf-8"
    )
    makefile = repo / "{{cookiecutter.project_slug}}" / "Makefile"
    makefile.write_text(makefile.read_text("utf-8") + "\n# a template addition\n", "utf-8")
    git(repo, "commit", "-qam", "template changes")

    updated = cruft("update", "--skip-apply-ask", "--project-dir", str(project), cwd=project)
    assert updated.returncode == 0, updated.stdout
    assert not list(project.rglob("*.rej")), updated.stdout
    readme_text = readme.read_text("utf-8")
    assert "## Our notes\n\nKeep this." in readme_text
    assert "- New in the template." in readme_text
    assert "<<<<<<<" not in readme_text
    assert events.read_text("utf-8").startswith("# our marker line\n")
    assert (project / "Makefile").read_text("utf-8").endswith("# a template addition\n")
    assert (project / ".env").read_text(encoding="utf-8") == secret
    state = json.loads((project / ".cruft.json").read_text("utf-8"))
    assert state["commit"] == git(repo, "rev-parse", "HEAD")
