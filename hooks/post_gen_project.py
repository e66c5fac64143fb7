"""Shape the rendered project to the chosen options.

One table says which paths belong to which option; everything belonging to an
option that was not chosen is deleted. Then the hook records the answers,
writes a `.env` with a fresh secret (unless the project already has one: a
re-render or an update never replaces it) and prints the next steps.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from pathlib import Path

# (prompt key, choice) -> paths (globs, relative to the project) that only that
# choice uses.
OPTION_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("transport", "sse"): (
        "src/*/transports/sse.py",
        "docs/sse.md",
        "tests/test_sse*.py",
        "tests/sse_client.py",
        "tests/sse_extending_apps.py",
        "tests/test_websocket_with_sse*.py",
        "loadtest/sse.py",
        "tests/test_loadtest_sse.py",
        "client/src/sse*.ts",
        "client/test/sse*.test.ts",
        "src/*/static/demo-sse.js",
    ),
    ("transport", "websocket"): (
        "src/*/transports/websocket.py",
        "docs/websocket.md",
        "src/*/transports/ws_*.py",
        "loadtest/websocket.py",
        "tests/test_websocket*.py",
        "tests/ws_client.py",
        "client/src/websocket*.ts",
        "client/test/websocket*.test.ts",
        "src/*/static/demo-websocket.js",
    ),
    ("broadcaster", "memory"): (
        "compose.memory.yaml",
        "src/*/broadcast/memory.py",
        "tests/test_memory_broadcaster*.py",
    ),
    ("broadcaster", "redis"): (
        "compose.redis.yaml",
        "src/*/broadcast/redis*.py",
        "docs/redis.md",
        "src/*/devredis.py",
        "tests/test_redis*.py",
        "tests/redis_*.py",
        ".github/workflows/redis.yml",
        "tests/test_websocket_redis*.py",
    ),
}

# Files that exist in one variant per option: whichever is left takes the plain name.
RENAMES: dict[str, str] = {
    "compose.memory.yaml": "compose.yaml",
    "compose.redis.yaml": "compose.yaml",
}

# One `uv.lock` per combination of these answers, kept as `uv-locks/<answers>.lock`
# (in this order, joined by `-`); the chosen one becomes `uv.lock`.
LOCKS_DIR = "uv-locks"
LOCK_KEYS: tuple[str, ...] = ("transport", "broadcaster")

# What each answer of a prompt turns on (`both` is two transports).
CHOICES_ENABLED: dict[tuple[str, str], tuple[str, ...]] = {
    ("transport", "both"): ("sse", "websocket"),
}


def enabled_choices(context: dict[str, str], key: str) -> set[str]:
    """The choices of `key` that the answers turn on."""
    answer = context[key]
    return set(CHOICES_ENABLED.get((key, answer), (answer,)))


def paths_to_remove(root: Path, context: dict[str, str]) -> list[Path]:
    """Every path that belongs only to options the answers did not choose."""
    found: list[Path] = []
    for (key, choice), patterns in OPTION_PATHS.items():
        if choice in enabled_choices(context, key):
            continue
        for pattern in patterns:
            found.extend(sorted(root.glob(pattern)))
    return found


def remove_unused_paths(root: Path, context: dict[str, str]) -> None:
    """Delete the files and folders of options that were not chosen."""
    for path in paths_to_remove(root, context):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def rename_variants(root: Path) -> None:
    """Give the chosen variant of each file its plain name."""
    for variant, name in RENAMES.items():
        if (root / variant).exists():
            (root / variant).rename(root / name)


def lock_name(context: dict[str, str]) -> str:
    """The file name, in `uv-locks/`, of the lock for these answers."""
    return "-".join(context[key] for key in LOCK_KEYS) + ".lock"


def choose_lock(root: Path, context: dict[str, str]) -> None:
    """Keep the lock of the chosen combination as `uv.lock`; drop the others."""
    locks = root / LOCKS_DIR
    (locks / lock_name(context)).rename(root / "uv.lock")
    shutil.rmtree(locks)


def record_answers(root: Path, context: dict[str, str]) -> None:
    """Write the prompt answers, without cookiecutter's internals, for re-rendering."""
    answers = {k: v for k, v in context.items() if not k.startswith("_")}
    text = json.dumps(answers, indent=2, ensure_ascii=False) + "\n"
    (root / ".cookiecutter.json").write_text(text, encoding="utf-8")


def write_env(root: Path) -> bool:
    """Give the project a development `.env` with a secret of its own, unless it has one.

    Returns whether it wrote one.
    """
    env = root / ".env"
    if env.exists():
        return False
    secret = secrets.token_urlsafe(48)
    env.write_text(
        "# Development settings; git-ignored. See README.md for every variable.\n"
        f"JWT_SECRET={secret}\n"
        "ENVIRONMENT=development\n",
        encoding="utf-8",
    )
    return True


def next_steps(slug: str, wrote_env: bool) -> str:
    """What to do after rendering, as printed at the end."""
    env_line = (
        "  .env holds a fresh random JWT_SECRET for development (git-ignored).\n"
        if wrote_env
        else "  The existing .env was kept as it was.\n"
    )
    return (
        f"\nCreated {slug}/.\n"
        f"{env_line}"
        "Next:\n"
        f"  cd {slug}\n"
        "  git init && pre-commit install   # pre-commit: `pipx install pre-commit`\n"
        "  make install       # .venv with the service and its dev tools\n"
        "  make dev           # the service on http://127.0.0.1:8000\n"
        f"  .venv/bin/python -m {slug} token --sub alice --subscribe 'room:*' --publish 'room:*'\n"
        "                     # a development token (README.md: Quickstart)\n"
        "  make test          # lint, types and tests\n"
        "  docker compose up --build   # or run it in a container\n"
    )


def main() -> None:
    """Run every step on the freshly rendered project."""
    context = json.loads(r"""{{ cookiecutter | tojson }}""")
    root = Path.cwd()
    remove_unused_paths(root, context)
    rename_variants(root)
    choose_lock(root, context)
    record_answers(root, context)
    wrote_env = write_env(root)
    print(next_steps(context["project_slug"], wrote_env), file=sys.stderr)


if __name__ == "__main__":
    main()
