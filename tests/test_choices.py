"""The matrix the suite renders is derived from cookiecutter.json and covers every choice."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from types import ModuleType

from rendering import CHOICE_KEYS, COMBINATIONS, CONTEXT, TEMPLATE, TEXT_CHOICE_KEYS


def load_hook(name: str) -> ModuleType:
    """Import a hook script as a module (its Jinja sits inside a string literal)."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POST_GEN = load_hook("post_gen_project")
KEPT_LOCKS = frozenset(
    p.name for p in (TEMPLATE / "{{cookiecutter.project_slug}}" / POST_GEN.LOCKS_DIR).iterdir()
)


def coverage_gaps(
    context: dict[str, object],
    combinations: Sequence[tuple[str, ...]],
    hook: ModuleType,
    kept_locks: frozenset[str],
) -> list[str]:
    """Every choice of a shaping prompt that the matrix, the hook's table or the locks miss.

    Also every table entry or lock that names a choice `context` doesn't offer.
    """
    offered = {key: list(context[key]) for key in CHOICE_KEYS}  # type: ignore[call-overload]
    gaps = []
    for position, key in enumerate(CHOICE_KEYS):
        for choice in offered[key]:
            if not any(combo[position] == choice for combo in combinations):
                gaps.append(f"{key}={choice}: no rendered combination")
            if (key, choice) not in hook.OPTION_PATHS and (key, choice) not in hook.CHOICES_ENABLED:
                gaps.append(f"{key}={choice}: not in the hook's OPTION_PATHS or CHOICES_ENABLED")
    for key, choice in [*hook.OPTION_PATHS, *hook.CHOICES_ENABLED]:
        if choice not in offered.get(key, []):
            gaps.append(f"{key}={choice}: in the hook's table, not in cookiecutter.json")
    for (key, answer), enabled in hook.CHOICES_ENABLED.items():
        gaps.extend(
            f"{key}={answer} turns on {choice}, which owns no paths"
            for choice in enabled
            if (key, choice) not in hook.OPTION_PATHS
        )
    wanted_locks = {
        hook.lock_name(dict(zip(hook.LOCK_KEYS, answers, strict=True)))
        for answers in itertools.product(*(offered[key] for key in hook.LOCK_KEYS))
    }
    gaps.extend(f"{name}: no kept lock" for name in sorted(wanted_locks - kept_locks))
    gaps.extend(
        f"{name}: a kept lock for no combination" for name in sorted(kept_locks - wanted_locks)
    )
    return gaps


def test_every_list_prompt_is_part_of_the_matrix() -> None:
    """A new choice prompt in cookiecutter.json can't escape the rendered matrix."""
    list_prompts = {k for k, v in CONTEXT.items() if isinstance(v, list) and not k.startswith("_")}
    assert list_prompts == set(CHOICE_KEYS) | set(TEXT_CHOICE_KEYS)


def test_every_choice_is_rendered_shaped_and_locked() -> None:
    """Each answer is in a rendered combination, in the hook's table, and has its locks."""
    assert coverage_gaps(CONTEXT, COMBINATIONS, POST_GEN, KEPT_LOCKS) == []


def test_a_new_choice_without_its_parts_is_reported() -> None:
    """The coverage check fails for a choice added only to cookiecutter.json."""
    transports = [*CONTEXT["transport"], "grpc"]  # type: ignore[misc]
    context = {**CONTEXT, "transport": transports}
    gaps = coverage_gaps(context, COMBINATIONS, POST_GEN, KEPT_LOCKS)
    assert "transport=grpc: no rendered combination" in gaps
    assert "transport=grpc: not in the hook's OPTION_PATHS or CHOICES_ENABLED" in gaps
    assert {g for g in gaps if g.endswith(": no kept lock")} == {
        f"grpc-{broadcaster}.lock: no kept lock"
        for broadcaster in CONTEXT["broadcaster"]  # type: ignore[attr-defined]
    }


def test_a_stale_table_entry_or_lock_is_reported() -> None:
    """A choice removed from cookiecutter.json leaves table entries and locks that are reported."""
    context = {**CONTEXT, "broadcaster": ["memory"]}
    combinations = [c for c in COMBINATIONS if c[1] == "memory"]
    gaps = coverage_gaps(context, combinations, POST_GEN, KEPT_LOCKS)
    assert "broadcaster=redis: in the hook's table, not in cookiecutter.json" in gaps
    assert "both-redis.lock: a kept lock for no combination" in gaps


def test_prompts_are_questions_for_every_key() -> None:
    """Every public prompt has a human-readable question in __prompts__."""
    prompts = CONTEXT["__prompts__"]
    assert isinstance(prompts, dict)
    public = {k for k in CONTEXT if not k.startswith("_")}
    assert public <= set(prompts)
