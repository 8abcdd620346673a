"""The front door stays a front door and the docs stay true: the README is at most 250 lines, every relative
link in it and in docs/ points to a file that exists, and the cheap code runs as written: every
``python -m dpbench ...`` and ``python -m dpbench.search ...`` command composes against conf/ and passes the
run's key check (each value of a sweep at least once), ``python -m dpbench.verify FILE:Class`` names a class
that exists, other ``python -m dpbench.<module>`` commands name a module (the telemetry CLI parses its
arguments), ``python scripts/...`` names a script, a path into the repository in backticks exists, every Python
block compiles (those without ``...`` run, a structured mechanism through the kernel), and a YAML block that
shows a shipped mechanism config matches it."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from dpbench.config_schema import check_config_keys
from dpbench.engine.per_sample import MaterializedGradients
from dpbench.extras import MissingExtraError, import_errors
from dpbench.privacy.mechanism import Mechanism
from dpbench.privacy.privatizer import StructuredPrivatizer

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND = re.compile(r"python -m (dpbench(?:\.\w+)*)(.*)")
SCRIPT = re.compile(r"python (scripts/[\w/.-]+\.py)")
# A command with a stand-in for the user's own value (NAME, DIR, RUN_DIR, path/to/..., "...") is a template.
PLACEHOLDER = re.compile(r"\.\.\.|=[A-Z][A-Z_]*\b|\b[A-Z][A-Z_]{2,}\b|\[")
EXAMPLE_PLUGIN = REPO / "mechanisms" / "examples" / "flat_clip_plugin.py"


@dataclass(frozen=True)
class Command:
    page: str
    module: str
    words: tuple[str, ...]
    pythonpath: bool  # the line puts a directory of the user's on PYTHONPATH

    def __str__(self) -> str:
        return f"{self.page}: python -m {self.module} {' '.join(self.words)}".strip()


def documented_commands() -> list[Command]:
    """Every ``python -m dpbench...`` command on every page, cut at a closing backtick or a shell comment."""
    found = []
    for page in PAGES:
        for line in page.read_text().splitlines():
            for match in COMMAND.finditer(line):
                rest = re.split(r"`|\s#|\|", match.group(2))[0]
                rest = re.sub(r"\$\{?\w+\}?", "0", rest)  # a shell loop's variable (seed=$seed)
                words = tuple(shlex.split(rest))
                prefix = line[: match.start()]
                found.append(Command(page.name, match.group(1), words, "PYTHONPATH=" in prefix))
    return found


COMMANDS = documented_commands()


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_quick_start_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text()
    assert "pip install -e . && python -m dpbench " in readme
    assert "pip install -e '.[test]' && python -m pytest " in readme


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """Single-run override lists that together use every value of every comma-separated sweep."""
    values = []
    for override in overrides:
        key, sep, value = override.partition("=")
        choices = value.split(",") if sep and "," in value and not value.startswith(("[", "{", "'", '"')) else [value]
        values.append((key, sep, choices))
    width = max((len(choices) for _, _, choices in values), default=1)
    return [[f"{key}{sep}{choices[i % len(choices)]}" for key, sep, choices in values] for i in range(width)]


def run_overrides(command: Command) -> list[str]:
    """The overrides of a run or search command, less ``-m`` and the Hydra launcher's own settings."""
    return [w for w in command.words if w not in ("-m", "--multirun") and not w.startswith(("hydra/", "hydra."))]


def user_modules(command: Command, directory: Path) -> list[str]:
    """Write the user's modules a command names (``_target_=my_module.MyClass``: the docs' stand-in for the user's
    own code) into ``directory``, each the example plugin under the documented class name; their names."""
    written = []
    for word in command.words:
        key, _, target = word.partition("=")
        module, _, cls = target.rpartition(".")
        if key.endswith("._target_") and module.startswith("my_"):
            source = EXAMPLE_PLUGIN.read_text().replace("class FlatClipPlugin", f"class {cls}")
            (directory / f"{module}.py").write_text(source)
            written.append(module)
    return written


def is_template(command: Command) -> bool:
    return bool(PLACEHOLDER.search(" ".join(command.words)))


RUNS = [c for c in COMMANDS if c.module in ("dpbench", "dpbench.search") and not is_template(c)]


@pytest.mark.parametrize("command", RUNS, ids=str)
def test_run_and_search_commands_compose_and_pass_the_key_check(command, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # what PYTHONPATH=path/to/dir does
    modules = user_modules(command, tmp_path)
    overrides_of_command = run_overrides(command)
    search = []
    if command.module == "dpbench.search":  # the search composes its trials with its tune preset (private by default)
        presets = [w for w in overrides_of_command if re.fullmatch(r"\+?tune=\w+", w)]
        search = [f"+tune={presets[-1].split('=')[1]}" if presets else "+tune=private"]
        overrides_of_command = [w for w in overrides_of_command if w not in presets]
    try:
        for overrides in sweep_points(overrides_of_command):
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("config", overrides=[*search, *overrides])
            check_config_keys(cfg)
    except MissingExtraError as error:
        if not import_errors(error.extra):  # the extra is installed: the error is real
            raise
        pytest.skip(str(error))
    finally:
        for module in modules:
            sys.modules.pop(module, None)


def test_every_documented_run_is_checked():
    """The checks above see the commands: the README's quick start, sweeps, PYTHONPATH line and headline rows."""
    readme = [c for c in RUNS if c.page == "README.md"]
    assert any(c.pythonpath for c in readme)
    assert any("-m" in c.words for c in readme)
    assert any("mechanism=normalized" in c.words for c in readme)


VERIFIES = [c for c in COMMANDS if c.module == "dpbench.verify" and c.words and not c.words[0].startswith("path/to/")]


@pytest.mark.parametrize("command", VERIFIES, ids=str)
def test_verify_commands_name_a_class_that_exists(command):
    path, _, name = command.words[0].partition(":")
    assert (REPO / path).is_file(), f"{command}: no file {path}"
    classes = {n.name for n in ast.walk(ast.parse((REPO / path).read_text())) if isinstance(n, ast.ClassDef)}
    assert name in classes, f"{command}: {path} defines {sorted(classes)}, not {name}"


def test_the_readme_verifies_a_real_plugin():
    assert any(c.page == "README.md" for c in VERIFIES)


@pytest.mark.parametrize(
    "module", sorted({c.module for c in COMMANDS} | {"dpbench.verify", "dpbench.report", "dpbench.search"})
)
def test_documented_modules_exist(module):
    assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"


TELEMETRY = [c for c in COMMANDS if c.module == "dpbench.telemetry" and c.words and not is_template(c)]


@pytest.mark.parametrize("command", TELEMETRY, ids=str)
def test_telemetry_commands_parse(command):
    try:
        from dpbench.telemetry.__main__ import build_parser
    except MissingExtraError as error:
        if not import_errors(error.extra):  # the extra is installed: the error is real
            raise
        pytest.skip(str(error))
    build_parser().parse_args(list(command.words))


def test_documented_scripts_exist():
    for page in PAGES:
        for script in SCRIPT.findall(page.read_text()):
            assert (REPO / script).is_file(), f"{page.name} runs missing {script}"


REPO_PATH = re.compile(r"`((?:dpbench|tests|mechanisms|conf|scripts|docs)/[^`\s:]*)")


def brace_expansions(path: str) -> list[str]:
    """``conf/train/{mnist,fmnist}.yaml`` -> both paths."""
    match = re.search(r"\{([^}]*)\}", path)
    if match is None:
        return [path]
    choices = [path.replace(match.group(0), choice, 1) for choice in match.group(1).split(",")]
    return [expanded for choice in choices for expanded in brace_expansions(choice)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_repository_paths_exist(page):
    """Every path into the repository a page names in backticks exists (a glob matches something)."""
    for mention in REPO_PATH.findall(page.read_text()):
        if PLACEHOLDER.search(mention) or "<" in mention:
            continue
        for path in brace_expansions(mention.rstrip("/")):
            assert any(REPO.glob(path)), f"{page.name} names {path}, which does not exist"


def code_blocks(language: str) -> list[tuple[str, str]]:
    return [(page.name, body) for page in PAGES for lang, body in FENCE.findall(page.read_text()) if lang == language]


def block_ids(blocks: list[tuple[str, str]]) -> list[str]:
    return [f"{page}-{index}" for index, (page, _) in enumerate(blocks)]


@pytest.mark.parametrize("page, source", code_blocks("python"), ids=block_ids(code_blocks("python")))
def test_python_blocks_run(page, source):
    """Every Python block compiles; one without ``...`` runs, and a structured mechanism it defines releases a
    gradient through the kernel with a partition of the tensors and the sensitivity of its thresholds."""
    code = compile(source, page, "exec")
    if "..." in source:
        return
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  (the repository's own documentation, run as a reader would)
    shapes = [torch.Size([4, 3]), torch.Size([3]), torch.Size([2, 2, 2])]
    for value in list(namespace.values()):
        if isinstance(value, type) and issubclass(value, Mechanism) and value is not Mechanism:
            mechanism = value(max_grad_norm=1.0)
            generator = torch.Generator().manual_seed(0)
            privatizer = StructuredPrivatizer(mechanism, shapes, 1.0, 8.0, 0.1, generator=generator)
            grads = [100 * torch.randn(8, *shape) for shape in shapes]
            record = privatizer.release([MaterializedGradients(grads)], step=0, epoch=0).record
            thresholds = mechanism.thresholds(0, 0)
            assert record.sensitivity == pytest.approx(sum(c * c for c in thresholds) ** 0.5)


@pytest.mark.parametrize("page, source", code_blocks("yaml"), ids=block_ids(code_blocks("yaml")))
def test_yaml_blocks_match_the_shipped_config(page, source):
    shown = yaml.safe_load(source)
    shipped = CONF / "mechanism" / f"{shown.get('name')}.yaml"
    if shipped.is_file():
        assert shown == yaml.safe_load(shipped.read_text()), f"{page} shows {shipped.name} out of date"
