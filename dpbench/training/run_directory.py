"""A run directory's promises: nothing already computed is lost, and a run resumes only with the settings it
started with (execution keys such as paths and the device may change)."""

from __future__ import annotations

import hashlib
import logging

from omegaconf import DictConfig, OmegaConf

from dpbench.errors import DpbenchError
from dpbench.reporting.run_files import RunFiles

log = logging.getLogger("dpbench")

# Keys that change how (or where) a run is executed but not what it computes: a resumed run may change them.
EXECUTION_KEYS = ("resume", "overwrite", "progress", "device", "paths")


# File systems refuse names over 255 bytes; a run's or a search's name is its overrides, which can be longer.
MAX_NAME_BYTES = 255


def directory_name(overrides: str) -> str:
    """A directory name for a run or search named by its ``overrides``: the text itself when it fits, else its
    start and a hash of the whole (distinct overrides keep distinct names; the config inside says the rest)."""
    name = overrides or "default"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return name.encode()[: MAX_NAME_BYTES - len(digest) - 2].decode(errors="ignore") + ",#" + digest


# A text spelled in the letters a-p (a hex digit each): passes Hydra's override grammar and OmegaConf's resolver
# arguments unquoted and stays a string there (a hex spelling of digits only would be read as a number).
_HEX_TO_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_LETTERS_TO_HEX = str.maketrans("abcdefghijklmnop", "0123456789abcdef")


def letter_spelling(text: str) -> str:
    """``text`` spelled in the letters a-p, for a resolver argument; :func:`public_proxy_run_name` reads it."""
    return text.encode().hex().translate(_HEX_TO_LETTERS)


def public_proxy_run_name(search: str, seed: int, own_seed: int) -> str:
    """The run directory of a public proxy's choice applied to the private data at ``seed``: named by its search
    (the search directory's name in :func:`letter_spelling`), and by the seed where that is not the search's own
    (``own_seed``), whose run keeps the search's name alone."""
    name = bytes.fromhex(search.translate(_LETTERS_TO_HEX)).decode()
    suffix = "" if int(seed) == int(own_seed) else f",final_seed={int(seed)}"
    return directory_name(f"public_proxy,{name}{suffix}")


class RunDirectoryError(DpbenchError, RuntimeError):
    """The run directory holds work that this invocation would otherwise destroy."""


def check_run_directory(cfg: DictConfig, files: RunFiles) -> bool:
    """True if the run should resume from its checkpoint."""
    if not files.checkpoint.exists() or cfg.overwrite:
        if cfg.resume:
            log.info("resume=true but %s holds no checkpoint: starting from scratch", files.dir)
        return False
    if not cfg.resume:
        raise RunDirectoryError(
            f"{files.dir} holds an unfinished run (checkpoint.pt); pass resume=true to continue it "
            "or overwrite=true to start it again"
        )
    differing = _differing_keys(
        OmegaConf.to_container(OmegaConf.load(files.config)), OmegaConf.to_container(cfg, resolve=True)
    )
    if differing:
        raise RunDirectoryError(
            f"resume=true, but the config differs from the one the run in {files.dir} started with "
            f"({files.config}) at {', '.join(differing)}; resume with the same settings, or pass overwrite=true"
        )
    return True


def _differing_keys(stored: object, current: object, where: str = "") -> list[str]:
    """The dotted keys whose values differ between two config trees, execution keys (EXECUTION_KEYS) left out."""
    if not (isinstance(stored, dict) and isinstance(current, dict)):
        return [] if stored == current else [f"{where.rstrip('.')} (then {stored!r}, now {current!r})"]
    return [
        key
        for name in sorted(set(stored) | set(current))
        if not (not where and name in EXECUTION_KEYS)
        for key in _differing_keys(stored.get(name, "absent"), current.get(name, "absent"), f"{where}{name}.")
    ]
