"""Each `license` answer gives the project its LICENSE and matching package metadata."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from rendering import CONTEXT, render

# A line only that license's text has, and the `license` pyproject.toml declares.
LICENSES = {
    "MIT": ("Permission is hereby granted, free of charge", "MIT"),
    "Apache-2.0": ("Apache License", "Apache-2.0"),
    "BSD-3-Clause": ("Neither the name of the copyright holder", "BSD-3-Clause"),
    "Proprietary": ("All rights reserved.", "LicenseRef-Proprietary"),
}


def test_every_license_choice_is_covered() -> None:
    """A license added to cookiecutter.json needs its expectations here."""
    assert set(LICENSES) == set(CONTEXT["license"])  # type: ignore[arg-type]


@pytest.mark.parametrize("license_", sorted(LICENSES))
def test_license_renders_with_its_holder(tmp_path: Path, license_: str) -> None:
    """LICENSE holds the chosen text and the author; pyproject.toml names both."""
    project = render(
        tmp_path,
        license=license_,
        author_name='Zoë "Z" Example',
        author_email="zoe@example.org",
        transport="sse",
        broadcaster="memory",
    )
    phrase, spdx = LICENSES[license_]
    text = (project / "LICENSE").read_text(encoding="utf-8")
    assert phrase in text
    assert 'Zoë "Z" Example' in text
    assert not [other for other, (p, _) in LICENSES.items() if other != license_ and p in text]
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == spdx
    assert meta["license-files"] == ["LICENSE"]
    assert meta["authors"] == [{"name": 'Zoë "Z" Example', "email": "zoe@example.org"}]
    private = "Private :: Do Not Upload" in meta.get("classifiers", [])
    assert private == (license_ == "Proprietary")


def test_an_empty_email_leaves_only_the_name(tmp_path: Path) -> None:
    """Without an email the author entry carries just the name."""
    project = render(tmp_path, author_email="", transport="sse", broadcaster="memory")
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["authors"] == [{"name": "Your Name"}]
