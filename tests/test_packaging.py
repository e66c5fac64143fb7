"""Packaging and delivery of the rendered project: locks, installs, container, CI, deployment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from rendering import COMBINATIONS, TEMPLATE, combo_id, free_port, render, require_tool, run
from test_choices import load_hook

Renderer = Callable[[str, str], Path]
post_gen = load_hook("post_gen_project")

# The oldest Python `requires-python` admits and the newest CPython, which CI runs.
PYTHON_FLOOR = "3.11"
PYTHON_NEWEST = "3.14"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def combos() -> list[object]:
    """One parameter per combination, each kept on its xdist group."""
    return [
        pytest.param(*combo, id=combo_id(combo), marks=pytest.mark.xdist_group(combo_id(combo)))
        for combo in COMBINATIONS
    ]


def uv() -> str:
    """The `uv` next to the suite's interpreter, else on PATH (required under CI=true)."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else require_tool("uv")


def lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    """`uv lock --check --offline`: does `uv.lock` match `pyproject.toml`? (No network needed.)"""
    return run([uv(), "lock", "--check", "--offline"], project, timeout=120)


# 1. uv-native and locked


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_every_render_ships_a_lock_that_matches_its_pyproject(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """The render has its combination's `uv.lock`, and `uv lock --check` passes."""
    project = rendered(transport, broadcaster)
    assert (project / "uv.lock").is_file()
    assert not (project / post_gen.LOCKS_DIR).exists()
    result = lock_check(project)
    assert result.returncode == 0, result.stdout


def test_the_lock_holds_under_any_project_name(tmp_path: Path) -> None:
    """The kept locks name the project by template, so another name still matches."""
    project = render(tmp_path, project_name="Zebra Push", transport="sse", broadcaster="redis")
    result = lock_check(project)
    assert result.returncode == 0, result.stdout
    assert '\nname = "zebra-push"\n' in (project / "uv.lock").read_text()


def test_a_stale_lock_is_caught(tmp_path: Path) -> None:
    """Changing a dependency without `make locks` makes the check fail."""
    project = render(tmp_path)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"fastapi>=' in text
    pyproject.write_text(re.sub(r'"fastapi>=[^"]+"', '"fastapi>=0.100"', text))
    result = lock_check(project)
    assert result.returncode != 0, result.stdout
    # Either uv says to run `uv lock`, or, when its cache can't answer offline, that
    # re-resolving (which only a stale lock needs) would take the network.
    assert "uv lock" in result.stdout or "network was disabled" in result.stdout, result.stdout


def test_every_combination_has_exactly_one_kept_lock() -> None:
    """`uv-locks/` holds one lock per combination of the answers, and nothing else."""
    kept = {
        p.name for p in (TEMPLATE / "{{cookiecutter.project_slug}}" / post_gen.LOCKS_DIR).iterdir()
    }
    keys = post_gen.LOCK_KEYS
    expected = {post_gen.lock_name(dict(zip(keys, combo, strict=True))) for combo in COMBINATIONS}
    assert kept == expected


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_lower_bounds_admit_the_versions_the_suite_runs(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """No lower bound is above what this suite installed and tested; dev tools are a PEP 735 group."""
    pyproject = tomllib.loads((rendered(transport, broadcaster) / "pyproject.toml").read_text())
    assert "optional-dependencies" not in pyproject["project"]
    dev = pyproject["dependency-groups"]["dev"]
    assert any(Requirement(r).name == "pre-commit" for r in dev)
    for line in [*pyproject["project"]["dependencies"], *dev]:
        requirement = Requirement(line)
        tested = Version(metadata.version(requirement.name))
        assert requirement.specifier.contains(tested), f"{line} excludes the tested {tested}"
        floor = next(s.version for s in requirement.specifier if s.operator == ">=")
        assert Version(floor).release[:2] == tested.release[:2], (
            f"{line}: the suite runs {tested}; make the floor a version it tested"
        )


def test_make_install_needs_only_python3_and_installs_the_hook(tmp_path: Path) -> None:
    """With no uv on PATH, `make install` bootstraps it, syncs from the lock, installs pre-commit."""
    require_tool("make")
    require_tool("git")
    python3 = shutil.which("python3", path="/usr/bin:/bin") or require_tool("python3")
    project = render(tmp_path / "out")
    run(["git", "init", "-q"], project)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV", "PYTHONPATH"}}
    env["PATH"] = "/usr/bin:/bin"  # uv lives elsewhere: it must be fetched
    assert shutil.which("uv", path=env["PATH"]) is None
    result = run(["make", "install", f"PYTHON={python3}"], project, env=env, timeout=900)
    assert result.returncode == 0, result.stdout
    assert "installing it into .tools/" in result.stdout
    assert (project / ".venv" / "bin" / "pytest").exists()
    assert (project / ".git" / "hooks" / "pre-commit").exists()
    check = run([".venv/bin/python", "-c", "import realtime_service.main"], project, env=env)
    assert check.returncode == 0, check.stdout


# 2. Python versions


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_python_versions_agree(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """requires-python's floor is what ruff, mypy and CI target; CI also runs the newest."""
    project = rendered(transport, broadcaster)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={PYTHON_FLOOR}"
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + PYTHON_FLOOR.replace(".", "")
    assert pyproject["tool"]["mypy"]["python_version"] == PYTHON_FLOOR
    ci = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python"] == [PYTHON_FLOOR, PYTHON_NEWEST]
    local = Version((project / ".python-version").read_text().strip())
    assert Version(PYTHON_FLOOR) <= local <= Version(PYTHON_NEWEST)


# 3. Workflows


def workflow_files(project: Path) -> list[Path]:
    """Every workflow of the project."""
    return sorted((project / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_workflows_are_pinned_and_least_privilege(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """Actions pinned to a commit (tag in a comment), read-only token, no persisted credentials."""
    project = rendered(transport, broadcaster)
    for path in workflow_files(project):
        text = path.read_text()
        workflow = yaml.safe_load(text)
        assert workflow["permissions"] == {"contents": "read"}, path.name
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                if "uses" not in step:
                    continue
                assert SHA_PIN.match(step["uses"]), step["uses"]
                assert re.search(re.escape(step["uses"]) + r" # v\d+\.\d+\.\d+\n", text)
                if step["uses"].startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_ci_runs_pre_commit_the_client_on_current_node_and_the_image(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """CI has a pre-commit job, the client on Node 22+, and builds the image until healthy."""
    project = rendered(transport, broadcaster)
    jobs = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())["jobs"]
    runs = lambda job: "\n".join(s.get("run", "") for s in jobs[job]["steps"])  # noqa: E731
    assert "pre-commit run --all-files" in runs("pre-commit")
    node = next(s for s in jobs["client"]["steps"] if "setup-node" in s.get("uses", ""))
    assert int(node["with"]["node-version"]) in {22, 24}
    assert "docker compose up --build" in runs("docker") and "--wait" in runs("docker")
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format"} <= hooks
    assert "pre-commit install" in (project / "Makefile").read_text()


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_dependabot_covers_actions_python_and_npm(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """Dependabot updates the pinned actions, uv.lock and the client."""
    project = rendered(transport, broadcaster)
    config = yaml.safe_load((project / ".github/dependabot.yml").read_text())
    by_ecosystem = {u["package-ecosystem"]: u["directory"] for u in config["updates"]}
    assert by_ecosystem["github-actions"] == "/"
    assert by_ecosystem["uv"] == "/"
    assert by_ecosystem["npm"] == "/client"


# 4. Container and deployment


def healthcheck_command(project: Path) -> list[str]:
    """The Dockerfile's HEALTHCHECK command, checked to be the compose file's too."""
    dockerfile = (project / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])", dockerfile)
    assert match, "no HEALTHCHECK CMD [...] in the Dockerfile"
    command: list[str] = json.loads(match.group(1))
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert compose["services"]["app"]["healthcheck"]["test"] == ["CMD", *command]
    return command


@pytest.fixture
def server(rendered: Renderer, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real uvicorn of the both-memory render on a free port; killed afterwards."""
    from rendering import project_env

    project = rendered("both", "memory")
    port = free_port()
    env = project_env(project, {"JWT_SECRET": "x" * 64})
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "realtime_service.main:app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield project, port
    finally:
        process.kill()
        process.wait(10)
        log.close()


def test_the_images_healthcheck_reports_readiness_without_curl(server: tuple[Path, int]) -> None:
    """The HEALTHCHECK (Python, no curl) succeeds once /readyz answers, fails while nothing does."""
    project, port = server
    command = healthcheck_command(project)
    assert command[0] == "python" and "curl" not in " ".join(command)
    assert "/readyz" in command[-1]
    on_port = [*command[:-1], command[-1].replace(":8000/", f":{port}/")]
    nothing = [*command[:-1], command[-1].replace(":8000/", f":{free_port()}/")]
    deadline = time.monotonic() + 30
    while run([sys.executable, *on_port[1:]], project, timeout=10).returncode != 0:
        assert time.monotonic() < deadline, "the healthcheck never passed"
        time.sleep(0.1)
    assert run([sys.executable, *nothing[1:]], project, timeout=10).returncode != 0


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_the_image_installs_from_the_lock_and_documents_proxy_trust(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """The Dockerfile syncs from uv.lock (--locked), and FORWARDED_ALLOW_IPS sits by --proxy-headers."""
    project = rendered(transport, broadcaster)
    dockerfile = (project / "Dockerfile").read_text()
    syncs = re.findall(r"^RUN (uv sync .*)$", dockerfile, re.MULTILINE)
    assert syncs and all("--locked" in s and "--no-dev" in s for s in syncs)
    assert "COPY pyproject.toml uv.lock" in dockerfile
    assert not re.search(r"^(RUN|CMD|HEALTHCHECK).*\bcurl\b", dockerfile, re.MULTILINE)
    entry = dockerfile.rindex("--proxy-headers")  # the ENTRYPOINT
    assert 0 < entry - dockerfile.index("FORWARDED_ALLOW_IPS") < 600
    assert "FORWARDED_ALLOW_IPS" in (project / "README.md").read_text()


def test_the_dockerfiles_install_steps_work(tmp_path: Path) -> None:
    """Run the Dockerfile's own `uv sync` steps (no Docker needed): the app imports afterwards."""
    project = render(tmp_path / "out", transport="sse", broadcaster="redis")
    dockerfile = (project / "Dockerfile").read_text()
    env_line = re.search(r"^ENV (UV_PROJECT_ENVIRONMENT=.*)$", dockerfile, re.MULTILINE)
    assert env_line
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(dict(pair.split("=", 1) for pair in shlex.split(env_line.group(1))))
    venv = tmp_path / "venv"
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env["UV_PYTHON"] = sys.executable
    for step in re.findall(r"^RUN (uv sync .*)$", dockerfile, re.MULTILINE):
        args = shlex.split(step)
        result = run([uv(), *args[1:]], project, env=env, timeout=600)
        assert result.returncode == 0, f"{step}:\n{result.stdout}"
    check = run([str(venv / "bin/python"), "-c", "import realtime_service.main, redis"], tmp_path)
    assert check.returncode == 0, check.stdout
    dev_tool = run([str(venv / "bin/python"), "-c", "import pytest"], tmp_path)
    assert dev_tool.returncode != 0, "the image must not carry the dev tools"


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_compose_waits_for_a_healthy_app(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """compose.yaml gives the app a healthcheck (so `up --wait` means ready)."""
    healthcheck_command(rendered(transport, broadcaster))


def yaml_blocks(markdown: str) -> list[dict[str, object]]:
    """Every document of every ```yaml block."""
    blocks = re.findall(r"```yaml\n(.*?)```", markdown, re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_kubernetes_guide_has_probes_grace_and_ingress(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """docs/deploy.md: /healthz and /readyz probes, grace > SHUTDOWN_GRACE, ingress-nginx timeouts."""
    project = rendered(transport, broadcaster)
    text = (project / "docs" / "deploy.md").read_text()
    docs = {doc["kind"]: doc for doc in yaml_blocks(text)}
    pod = docs["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    settings = (project / "src/realtime_service/settings.py").read_text()
    default_grace = float(re.search(r"shutdown_grace: \w+ = ([\d.]+)", settings).group(1))  # type: ignore[union-attr]
    assert pod["terminationGracePeriodSeconds"] >= default_grace + 1
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert float(env["SHUTDOWN_GRACE"]["value"]) + 1 <= pod["terminationGracePeriodSeconds"]
    assert "FORWARDED_ALLOW_IPS" in env
    annotations = docs["Ingress"]["metadata"]["annotations"]  # type: ignore[index]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert "Workers per pod" in text
    if broadcaster == "memory":
        assert docs["Deployment"]["spec"]["replicas"] == 1  # type: ignore[index]
