"""Every shell block of a rendered README works when pasted, in order, into a fresh shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from readme_blocks import Block, run_blocks, shell_blocks
from rendering import (
    COMBINATIONS,
    TEMPLATE,
    combo_id,
    copy_template,
    free_port,
    render,
    require_tool,
)

DEV_URL = "127.0.0.1:8000"


def seed_venv(project: Path) -> None:
    """Give a checkout a `.venv` that sees this suite's packages (through a `.pth` file).

    The template README's `pip install cookiecutter` then finds it installed and needs no
    network.
    """
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    shared = [p for p in sys.path if p.endswith("site-packages")]
    (site / "_suite.pth").write_text("\n".join(shared) + "\n", encoding="utf-8")


def reader_env(port: int) -> dict[str, str]:
    """A reader's shell: no test or virtualenv variables, `make dev` on `port`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env.update(PORT=str(port), PYTHONDONTWRITEBYTECODE="1")
    env.pop("REDIS_URL", None)  # `make dev` starts the bundled server, as on a fresh machine
    return env


def test_blocks_and_marks_are_read() -> None:
    """The parser finds bash blocks and their marks, and leaves other languages alone."""
    text = (
        "<!-- readme-test: background wait-url=http://x/healthz -->\n```bash\nmake dev\n```\n"
        "```nginx\nlocation / {}\n```\n"
        '<!-- readme-test: skip reason="too slow" -->\n```sh\nmake test\n```\n'
        "```bash\necho hi\n```\n"
    )
    blocks = shell_blocks(text)
    assert [b.code for b in blocks] == ["make dev\n", "make test\n", "echo hi\n"]
    assert blocks[0].background and blocks[0].marks["wait-url"] == "http://x/healthz"
    assert blocks[1].skipped and blocks[1].marks["reason"] == "too slow"
    assert not blocks[2].marks


def test_every_skipped_block_says_why(tmp_path: Path) -> None:
    """A block the test doesn't run carries its reason in the README itself."""
    project = render(tmp_path, transport="both", broadcaster="redis")
    blocks = shell_blocks((project / "README.md").read_text(encoding="utf-8"))
    assert blocks
    assert all(b.marks.get("reason") for b in blocks if b.skipped)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("transport", "broadcaster"),
    [
        pytest.param(*c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_the_readme_runs_as_written(tmp_path: Path, transport: str, broadcaster: str) -> None:
    """Install, start, listen, publish, load-test: each README step works in a fresh shell."""
    require_tool("make")
    require_tool("curl")
    project = render(tmp_path / "out", transport=transport, broadcaster=broadcaster)
    port = free_port()
    # Only the port differs from what a reader pastes: each test server gets its own.
    readme = (project / "README.md").read_text(encoding="utf-8")
    blocks = shell_blocks(readme.replace(DEV_URL, f"127.0.0.1:{port}"))
    env = reader_env(port)
    logs = tmp_path / "logs"
    logs.mkdir()
    with run_blocks(blocks, project, env, logs) as ran:
        assert any("make install" in code for code in ran)
        assert any("loadtest" in code for code in ran)


@pytest.mark.timeout(300)
def test_the_template_readme_renders_from_a_fresh_checkout(tmp_path: Path) -> None:
    """The template README's checkout commands render a project into the ignored `out/`."""
    checkout = copy_template(tmp_path / "checkout")
    seed_venv(checkout)
    blocks = shell_blocks((TEMPLATE / "README.md").read_text(encoding="utf-8"))
    assert all(b.marks.get("reason") for b in blocks if b.skipped)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    logs = tmp_path / "logs"
    logs.mkdir()
    with run_blocks(blocks, checkout, env, logs) as ran:
        assert any("cookiecutter" in code for code in ran)
    project = checkout / "out" / "realtime_service"
    assert (project / "pyproject.toml").is_file() and (project / ".env").is_file()
    assert not (project / "src" / "realtime_service" / "transports" / "websocket.py").exists()
    # `out/` is ignored, so rendering leaves the checkout's status clean.
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", "out/realtime_service/README.md"],
        cwd=TEMPLATE,
        check=False,
        timeout=60,
    )
    assert ignored.returncode == 0


@pytest.mark.timeout(600)
def test_the_client_readme_runs_as_written(tmp_path: Path) -> None:
    """client/README.md's commands install, typecheck, test and build the TypeScript client."""
    npm = require_tool("npm")
    require_tool("node")
    project = render(tmp_path / "out", transport="both", broadcaster="memory")
    client = project / "client"
    blocks = shell_blocks((client / "README.md").read_text(encoding="utf-8"))
    assert blocks
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = os.pathsep.join([str(Path(npm).parent), env.get("PATH", "")])
    logs = tmp_path / "logs"
    logs.mkdir()
    with run_blocks(blocks, client, env, logs) as ran:
        assert any("npm run build" in code for code in ran)
    assert (client / "dist" / "sse.js").is_file() and (client / "dist" / "websocket.js").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    """The workflow runs `.ci/run`, which runs the test command the README gives."""
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    test_command = "make test"
    assert any(b.code.strip() == test_command for b in shell_blocks(readme))
    ci_lines = (TEMPLATE / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in [line.strip() for line in ci_lines]
    workflows = list((TEMPLATE / ".github" / "workflows").glob("*.yml"))
    assert workflows
    steps = [
        step.get("run", "")
        for workflow in workflows
        for job in yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"].values()
        for step in job["steps"]
    ]
    assert ".ci/run" in steps


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broadcaster", ["memory", "redis"])
def test_the_docs_commands_run_as_written(tmp_path: Path, broadcaster: str) -> None:
    """With the service started as the README says, every shell block in docs/ works."""
    require_tool("make")
    require_tool("curl")
    project = render(tmp_path / "out", transport="both", broadcaster=broadcaster)
    port = free_port()

    def blocks_of(path: Path) -> list[Block]:
        return shell_blocks(path.read_text(encoding="utf-8").replace(DEV_URL, f"127.0.0.1:{port}"))

    readme = blocks_of(project / "README.md")
    # The README's steps up to a running service: install, then `make dev`.
    until_dev = next(i for i, b in enumerate(readme) if b.background) + 1
    docs = sorted((project / "docs").glob("*.md"))
    blocks = readme[:until_dev] + [b for doc in docs for b in blocks_of(doc)]
    # Only what can't run here is skipped, each with its reason: the 20,000-connection
    # measurement, and with Redis the production and cluster commands.
    skipped = [b for b in blocks if b.skipped]
    assert all(b.marks.get("reason") for b in skipped)
    assert any("--clients 19960" in b.code for b in skipped)
    assert (len(skipped) > 1) == (broadcaster == "redis")
    logs = tmp_path / "logs"
    logs.mkdir()
    with run_blocks(blocks, project, reader_env(port), logs) as ran:
        assert any("loadtest" in code for code in ran)
