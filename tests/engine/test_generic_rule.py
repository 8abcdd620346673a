"""The ghost engine's generic layer rule (layer_rules.torch_func_rule) guesses which arguments are per-example
(a positional tensor whose first dimension is the batch size). Red team 7, hole B: a constant table passed
positionally with as many rows as the physical batch is split by example, so each example's gradient depends on
its position in the chunk. The rule now verifies, at every call, that its split reproduces the layer's batch
computation; honest layers with several per-example inputs still match the functorch reference."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpbench.engine import FunctorchEngine, GhostEngine
from dpbench.engine.independence import ExampleMixingError

ROWS = 8  # rows of the constant table = the physical batch size of the attack


class Signed(nn.Module):
    """``y = x * (table @ w).sum()``: the table is a constant passed positionally (a codebook, a basis)."""

    def __init__(self, d: int, init: float = 0.001) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((d,), init))

    def forward(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return x * (table @ self.w).sum()


class ChunkTable(nn.Module):
    """The red team's model, reduced: rows of +150 and -50 alternate, the layer uses their sum."""

    def __init__(self, init: float = 0.001) -> None:
        super().__init__()
        signs = torch.tensor([(-1.0) ** i for i in range(ROWS)]).unsqueeze(1)
        self.register_buffer("table", 100.0 * (signs * torch.ones(ROWS, 4) + 0.5))
        self.lin = nn.Linear(6, 3)
        self.signed = Signed(4, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.signed(self.lin(x), self.table)


class Shifted(nn.Module):
    """``y = x * w + shift``, with a per-example ``shift`` passed by keyword (the rule passes keywords whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor, *, shift: torch.Tensor) -> torch.Tensor:
        return x * self.w + shift


class KeywordShift(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)
        self.shifted = Shifted()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return self.shifted(h, shift=h.detach().roll(1, dims=0))


class Gate(nn.Module):
    """An honest generic layer with two per-example positional inputs and one constant of another length:
    ``y = tanh(x @ a) * (z @ b) + basis.sum(0) * c``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(6, 3))
        self.b = nn.Parameter(torch.randn(4, 3))
        self.c = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor, z: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.a) * (z @ self.b) + basis.sum(0) * self.c


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.gate = Gate()
        self.register_buffer("basis", torch.randn(ROWS + 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x, torch.tanh(self.lin(x)), self.basis)


def engine(model: nn.Module) -> GhostEngine:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generic-rule warning
        return GhostEngine(model, F.cross_entropy)


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


@pytest.mark.parametrize("init", [0.001, 0.0], ids=["outputs differ", "outputs agree at w=0, gradients do not"])
def test_a_constant_table_as_long_as_the_chunk_is_refused(init):
    torch.manual_seed(0)
    model = ChunkTable(init)
    gradients = engine(model).per_sample_gradients(*data(ROWS - 3))  # another batch size: the table is whole
    assert torch.isfinite(gradients.squared_norms()).all()
    with pytest.raises(ExampleMixingError, match=r"layer 'signed': Signed .* batch of 8\) does not treat examples "
                                                 r"independently .*constant table.*train.engine=functorch"):
        engine(model).per_sample_gradients(*data(ROWS)).squared_norms()


def test_a_per_example_keyword_argument_is_refused():
    torch.manual_seed(0)
    model = KeywordShift()
    with pytest.raises(ExampleMixingError, match=r"layer 'shifted'.*per-example keyword argument"):
        engine(model).per_sample_gradients(*data(5)).squared_norms()


@pytest.mark.parametrize("batch", [5, ROWS + 3], ids=["other batch size", "batch size = the constant's length"])
def test_an_honest_generic_layer_with_two_per_example_inputs_matches_the_reference(batch):
    """With as many examples as the constant has rows the rule splits the constant too, and the check refuses
    (see above); at every other batch size the generic rule is exact."""
    torch.manual_seed(0)
    model = TwoInputs()
    x, y = data(batch)
    if batch == ROWS + 3:
        with pytest.raises(ExampleMixingError, match="layer 'gate'"):
            engine(model).per_sample_gradients(x, y).squared_norms()
        return
    ghost = engine(model).per_sample_gradients(x, y)
    reference = FunctorchEngine(model, F.cross_entropy).per_sample_gradients(x, y)
    for got, expected in zip(ghost.materialize(), reference.materialize()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    torch.testing.assert_close(ghost.squared_norms(), reference.squared_norms(), rtol=1e-5, atol=1e-8)
