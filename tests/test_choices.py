"""The matrix the suite renders is derived from cookiecutter.json and covers every choice."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from rendering import CHOICE_KEYS, COMBINATIONS, CONTEXT, TEMPLATE, TEXT_CHOICE_KEYS


def load_hook(name: str) -> ModuleType:
    """Import a hook script as a module (its Jinja sits inside a string literal)."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_list_prompt_is_part_of_the_matrix() -> None:
    """A new choice prompt in cookiecutter.json can't escape the rendered matrix."""
    list_prompts = {k for k, v in CONTEXT.items() if isinstance(v, list) and not k.startswith("_")}
    assert list_prompts == set(CHOICE_KEYS) | set(TEXT_CHOICE_KEYS)


def test_matrix_covers_every_choice() -> None:
    """Every answer of every choice prompt is rendered in at least one combination."""
    for position, key in enumerate(CHOICE_KEYS):
        rendered_choices = {combo[position] for combo in COMBINATIONS}
        assert rendered_choices == set(CONTEXT[key])  # type: ignore[arg-type]


def test_post_gen_table_knows_every_choice() -> None:
    """Each choice either owns paths in post_gen's table or switches others on ('both')."""
    hook = load_hook("post_gen_project")
    owned = set(hook.OPTION_PATHS) | set(hook.CHOICES_ENABLED)
    for key in CHOICE_KEYS:
        for choice in CONTEXT[key]:  # type: ignore[attr-defined]
            assert (key, choice) in owned, f"{key}={choice} is missing from OPTION_PATHS"


def test_prompts_are_questions_for_every_key() -> None:
    """Every public prompt has a human-readable question in __prompts__."""
    prompts = CONTEXT["__prompts__"]
    assert isinstance(prompts, dict)
    public = {k for k in CONTEXT if not k.startswith("_")}
    assert public <= set(prompts)
