"""Epoch checkpoints: everything needed for a resumed run to continue exactly where it stopped.

A checkpoint holds the model, the optimizer, the mechanism's and the verifier's state, the ledger and metrics so far,
and every random state (torch's global generators, the sampler's, the noise generator). Resuming
from it therefore replays the same batches and noise, and reaches the same ledger and final epsilon
as an uninterrupted run. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from dpbench.errors import DpbenchError
from dpbench.privacy.containment import call_contained
from dpbench.privacy.ledger import PrivacyLedger
from dpbench.privacy.sampler import PoissonSampler
from dpbench.training.loop import TrainingState

log = logging.getLogger(__name__)


class CheckpointError(DpbenchError, RuntimeError):
    """A checkpoint file cannot be read (empty, truncated, or not a dpbench checkpoint)."""


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and persistent buffers under their ``state_dict`` names, read by the harness: a
    model's own ``state_dict`` (an override, a hook) is its code, and a red team's handed out a training image it
    had kept in a frozen parameter's gradient that way, after the last check of the model's state."""
    state: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        prefix = f"{prefix}." if prefix else ""
        for name, parameter in module._parameters.items():
            if parameter is not None:
                state[prefix + name] = parameter.detach()
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                state[prefix + name] = buffer.detach()
    return state


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    mechanism: object,
    sampler: PoissonSampler,
    noise_generator: torch.Generator,
    state: TrainingState,
    verifier: Stateful | None = None,
) -> None:
    payload = {
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "mechanism": _object_state(mechanism),
        "sampler": sampler.state_dict(),
        "noise_generator": noise_generator.get_state(),
        "verifier": verifier.state_dict() if verifier is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "state": {
            "epoch": state.epoch,
            "step": state.step,
            "ledger": state.ledger.to_dicts(),
            "epochs": state.epochs,
            "seconds": state.seconds,
            "parameter_average": state.parameter_average,
        },
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    mechanism: object,
    sampler: PoissonSampler,
    noise_generator: torch.Generator,
    verifier: Stateful | None = None,
) -> TrainingState:
    """Restore every object in place from ``path``; return the training state to continue from."""
    payload = read_checkpoint(path)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    saved_mechanism = payload["mechanism"]
    if isinstance(saved_mechanism, bytes):  # unpickling runs the mechanism's own code: contained
        saved_mechanism = call_contained(type(mechanism).__name__, "restoring its state", pickle.loads, saved_mechanism)
    if saved_mechanism is not None:  # (a dict: a checkpoint written before the state was pickled separately)
        vars(mechanism).update(saved_mechanism)
    sampler.load_state_dict(payload["sampler"])
    if verifier is not None and payload["verifier"] is not None:
        verifier.load_state_dict(payload["verifier"])
    noise_generator.set_state(payload["noise_generator"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    saved = payload["state"]
    return TrainingState(
        epoch=saved["epoch"],
        step=saved["step"],
        ledger=PrivacyLedger.from_dicts(saved["ledger"]),
        epochs=saved["epochs"],
        seconds=saved["seconds"],
        parameter_average=saved["parameter_average"],
    )


def load_released_model(path: Path, model: nn.Module) -> tuple[int, bool]:
    """Load a checkpoint's model for post-processing: its parameter average when the run kept one (what
    it evaluated), else its parameters. Returns the epoch it was saved after and whether it averaged."""
    payload = read_checkpoint(path)
    model.load_state_dict(payload["model"])
    average = payload["state"]["parameter_average"]
    if average is not None:
        with torch.no_grad():
            for parameter, value in zip([p for p in model.parameters() if p.requires_grad], average):
                parameter.copy_(value)
    return payload["state"]["epoch"], average is not None


def read_checkpoint(path: Path) -> dict:
    """The payload :func:`save_checkpoint` wrote to ``path``; a file that cannot be read is a :class:`CheckpointError`
    that names it (a run killed while writing never leaves one: files are renamed into place once complete)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001  (torch raises EOFError, RuntimeError, UnpicklingError, ... by damage)
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(error).__name__}: {error}); the file is damaged (empty or "
            "truncated, e.g. a full disk or a copy that stopped). Pass overwrite=true to start the run again"
        ) from error
    if not isinstance(payload, dict) or not {"model", "optimizer", "state"} <= set(payload):
        raise CheckpointError(
            f"{path} is not a dpbench checkpoint (no model, optimizer and state); pass overwrite=true to start the "
            "run again"
        )
    return payload


def _object_state(mechanism: object) -> bytes | None:
    """The mechanism's attributes, pickled (which runs the mechanism's own code: contained), if they can be
    (a plugin holding, say, an open file cannot be checkpointed; it is then rebuilt fresh on resume, with a
    warning)."""
    try:
        return call_contained(type(mechanism).__name__, "checkpointing its state", pickle.dumps, dict(vars(mechanism)))
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        log.warning("mechanism state cannot be checkpointed (%s); a resumed run restarts it fresh", error)
        return None
