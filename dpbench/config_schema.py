"""The keys a run's config may hold: an unknown key (a typo, ``+privacy.epsilon=...``) is refused before the run starts.

Hydra refuses ``privacy.epsilon=-1`` (no such key) but accepts ``+privacy.epsilon=-1``, which adds a key that no
code reads: the run would silently train at the configured target. :func:`check_config_keys` closes that gap.

- Settings (``privacy``, ``train``, ``tune`` and the root's own keys such as ``verify``, ``audit``, ``paths``) are
  declared in conf/: a key is known if some file of its group (for the root, conf/config.yaml) has it.
- Objects (``model``, ``dataset``, ``mechanism`` and every nested ``_target_``) take the keyword arguments of their
  target's constructor; a target that takes ``**kwargs`` takes any key. A mechanism also has its display ``name`` and
  ``max_grad_norm``.

The error names every unknown key, the nearest known one, and the fix.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dpbench.errors import DpbenchError
from dpbench.extras import MissingExtraError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SETTINGS_GROUPS = ("privacy", "train", "tune")
OBJECT_GROUPS = ("model", "dataset", "mechanism")
# Keys Hydra's instantiate reads itself, and the keys the mechanism loader reads whatever the class
# (dpbench/training/plugin_loader.py: the display name, and the clipping bound every contract has).
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})
MECHANISM_KEYS = frozenset({"name", "max_grad_norm"})


class ConfigKeyError(DpbenchError, ValueError):
    """The config holds a key that no part of dpbench reads."""


class ConfigTargetError(DpbenchError, ImportError):
    """A ``_target_`` in the config names nothing that can be imported."""


def check_config_keys(cfg: DictConfig) -> None:
    """Raise :class:`ConfigKeyError` naming every key of ``cfg`` that dpbench does not know."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    problems = list(_unknown_keys(tree, root_declaration(), ""))
    if problems:
        raise ConfigKeyError(
            "unknown config key" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems)
            + ". Fix the name, or drop the key (a '+key=value' override adds a key that no part of dpbench reads)"
        )


def root_declaration() -> dict[str, Any]:
    """The declared keys: those of conf/config.yaml and of the files placed at the root (``# @package _global_``,
    e.g. a dataset's ``features``), and per settings group the union of its files' keys."""
    files = [CONF_DIR / "config.yaml", *(path for path in sorted(CONF_DIR.glob("*/*.yaml")) if _is_global(path))]
    declared = {
        key: value for key, value in _union(_load(path) for path in files).items() if key not in ("defaults", "hydra")
    }
    for group in SETTINGS_GROUPS:
        placed = [declared[group]] if isinstance(declared.get(group), Mapping) else []
        declared[group] = _union(iter([*placed, *(_load(path) for path in sorted((CONF_DIR / group).glob("*.yaml")))]))
    for group in OBJECT_GROUPS:
        declared[group] = None  # checked against its target
    return declared


def _is_global(path: Path) -> bool:
    with open(path) as handle:
        return any(line.strip() == "# @package _global_" for line in handle)


def _unknown_keys(node: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> Iterator[str]:
    for key, value in node.items():
        path = f"{where}{key}"
        if key == "hydra" and not where:
            continue
        if not where and key in OBJECT_GROUPS:
            if isinstance(value, Mapping):
                yield from _unknown_arguments(value, path, mechanism=key == "mechanism")
        elif key not in declared:
            yield _describe(path, key, declared, f"'{where.rstrip('.') or 'the root'}' has")
        elif isinstance(value, Mapping) and isinstance(declared[key], Mapping):
            yield from _unknown_keys(value, declared[key], path + ".")


def _unknown_arguments(node: Mapping[str, Any], where: str, mechanism: bool = False) -> Iterator[str]:
    """Keys of an object's config that its target does not take (nested ``_target_`` configs included)."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        factory = locate(target)
    except MissingExtraError:
        raise  # a shipped feature whose optional packages are not installed: the message names the extra
    except Exception as error:  # noqa: BLE001  (the user's module may raise anything while it is imported)
        group = where.split(".")[0]
        raise ConfigTargetError(
            f"{where}._target_={target} cannot be imported ({type(error).__name__}: {error}); pick a config with "
            f"{group}=NAME (conf/{group}/NAME.yaml), or put the module that defines it on PYTHONPATH"
        ) from None
    known = _parameters(factory)
    for key, value in node.items():
        if isinstance(value, Mapping) and "_target_" in value:
            yield from _unknown_arguments(value, f"{where}.{key}")
        if known is None or key in INSTANTIATE_KEYS or key in known or (mechanism and key in MECHANISM_KEYS):
            continue
        takes = known | (MECHANISM_KEYS if mechanism else frozenset())
        yield _describe(f"{where}.{key}", key, dict.fromkeys(takes), f"{target} takes")


def locate(target: str) -> Any:
    """The object a dotted ``_target_`` names (``package.module.Class`` or ``package.module.Class.attribute``)."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:split]).startswith(error.name):
                raise  # the module exists but imports something missing
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                raise ImportError(f"module '{'.'.join(parts[:split])}' has no attribute '{attribute}'")
            found = getattr(found, attribute)
        return found
    raise ImportError(f"no module named '{parts[0]}'")


def _parameters(factory: Any) -> frozenset[str] | None:
    """The keyword arguments ``factory`` takes, or None if it takes any (``**kwargs``) or cannot be inspected."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def _describe(path: str, key: str, declared: Mapping[str, Any], owner: str) -> str:
    nearest = difflib.get_close_matches(key, list(declared), n=1)
    hint = f" (did you mean '{path.rsplit('.', 1)[0] + '.' if '.' in path else ''}{nearest[0]}'?)" if nearest else ""
    return f"'{path}'{hint}: {owner} {', '.join(sorted(declared)) or 'no keys'}"


def _union(trees: Iterator[Mapping[str, Any]]) -> dict[str, Any]:
    """Every key of any tree; a key whose value is a mapping in some tree gets the union of those mappings."""
    merged: dict[str, Any] = {}
    for tree in trees:
        for key, value in tree.items():
            if isinstance(value, Mapping):
                known = merged.get(key)
                merged[key] = _union(iter([known, value])) if isinstance(known, Mapping) else dict(value)
            else:
                merged.setdefault(key, None)
    return merged


def _load(path: Path) -> dict[str, Any]:
    loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return loaded if isinstance(loaded, dict) else {}
