"""Registry of model classes, so a model can be built by name as well as by Hydra ``_target_``."""

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

ModelClass = TypeVar("ModelClass", bound=type[nn.Module])

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Register the decorated ``nn.Module`` class under ``name``."""

    def register(model_class: ModelClass) -> ModelClass:
        if name in _MODELS:
            raise ValueError(f"Model '{name}' is already registered")
        _MODELS[name] = model_class
        return model_class

    return register


def model_names() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_MODELS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered as ``name`` with constructor arguments ``kwargs``."""
    if name not in _MODELS:
        raise ValueError(f"Unknown model '{name}'. Known models: {', '.join(model_names())}")
    return _MODELS[name](**kwargs)
