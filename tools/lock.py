"""Refresh the rendered projects' `uv.lock`s: `make locks` (`make locks UPGRADE=1` to upgrade).

Renders every combination of the answers the locks depend on, runs `uv lock` in
it (starting from the lock kept so far, so only what the `pyproject.toml`
changed moves, unless upgrading), and keeps the result as
`{{cookiecutter.project_slug}}/uv-locks/<answers>.lock` with the project's name
put back as template syntax.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"
sys.dont_write_bytecode = True  # no __pycache__ in the template
sys.path.insert(0, str(TEMPLATE / "hooks"))
import post_gen_project as hook  # noqa: E402  (the hook's table says which locks exist)

NAME_TEMPLATE = "{{ cookiecutter.project_slug | replace('_', '-') }}"


def combinations() -> list[dict[str, str]]:
    """Every combination of the answers a lock depends on."""
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    choices = [context[key] for key in hook.LOCK_KEYS]
    return [dict(zip(hook.LOCK_KEYS, combo, strict=True)) for combo in itertools.product(*choices)]


def lock(answers: dict[str, str], workdir: Path, upgrade: bool) -> str:
    """The lock for one combination, as the template keeps it."""
    kept = PROJECT / hook.LOCKS_DIR / hook.lock_name(answers)
    if not kept.exists():
        kept.parent.mkdir(exist_ok=True)
        kept.write_text("", encoding="utf-8")  # a first lock: rendering needs the file
    project = Path(
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(workdir), extra_context=answers)
    )
    if not (project / "uv.lock").read_text(encoding="utf-8").strip():
        (project / "uv.lock").unlink()
    print(f"locking {hook.lock_name(answers)}", file=sys.stderr, flush=True)
    subprocess.run(
        ["uv", "lock", "--quiet", *(["--upgrade"] if upgrade else [])], cwd=project, check=True
    )
    name = project.name.replace("_", "-")
    text = (project / "uv.lock").read_text(encoding="utf-8")
    root = f'[[package]]\nname = "{name}"\n'
    if text.count(f'"{name}"') != 1 or root not in text:
        raise SystemExit(f"{name!r} should appear once in the lock, as its root package")
    return text.replace(root, root.replace(f'"{name}"', f'"{NAME_TEMPLATE}"'))


def main() -> None:
    """Lock every combination."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="move every pin to its newest")
    args = parser.parse_args()
    for answers in combinations():
        with tempfile.TemporaryDirectory(prefix="lock-") as workdir:
            text = lock(answers, Path(workdir), args.upgrade)
        (PROJECT / hook.LOCKS_DIR / hook.lock_name(answers)).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
