"""The front door stays a front door: the README is at most 250 lines, every relative link in it and in
docs/ points to a file that exists, and every `python -m dpbench ...` override in the README composes."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def readme_overrides() -> list[list[str]]:
    commands = []
    for line in (REPO / "README.md").read_text().splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith("python -m dpbench ") and "..." not in line:
            words = shlex.split(line)[3:]
            commands.append([w for w in words if w != "-m" and not w.startswith("hydra")])
    return commands


@pytest.mark.parametrize("overrides", readme_overrides(), ids=" ".join)
def test_readme_commands_compose(overrides):
    single = [o.split(",")[0] if "=" in o and "," in o.split("=", 1)[1] else o for o in overrides]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        compose("config", overrides=single)
