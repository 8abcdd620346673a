"""Variational autoencoders of the telemetry wide table (one row per device), trainable with DP-SGD.

Both share the published architecture (wide row -> 512 -> 256 -> 64-dimensional Gaussian latent and
back, ELU activations (:class:`~dpbench.models.fast_elu.FastELU`), Linear layers only, so the ghost engine covers every parameter) and differ in
the likelihood of a wide row given the latent:

* :class:`TabularVAE` (``model=vae``) is the published baseline (UCSD DSC 180B capstone): cross-entropy
  for each one-hot attribute, squared error for every other cell, KL to the prior; it decodes cells
  by their means, so structural zeros come back as small positive numbers.
* :class:`HurdleVAE` (``model=vae_hurdle``) models what the cells mean: a Bernoulli per table presence
  (and per browser), and *given presence* a Gaussian with learned variance on each day count and value
  summary in its fixed log1p scale (a log-normal: heavy tails are a shift of the mean, not outliers
  of a squared error), and a categorical for each composition (soft-target cross-entropy); absent
  tables contribute nothing but their presence bit. Sampling draws from these distributions;
  :meth:`HurdleVAE.match_marginals` fits them to marginals released with DP (see
  :mod:`dpbench.telemetry.marginals` for why DP-SGD needs it).

The harness hands the loss ``(model(x), y)`` per example, with ``y`` a class index, so ``forward``
returns the decoder's parameters, the latent's mean and log-variance and the input row itself, side
by side in one tensor, and :meth:`loss` reads the target from there. Examples never interact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dpbench.models.fast_elu import FastELU
from dpbench.telemetry.marginals import JOINT_PRESENCE, Marginals
from dpbench.telemetry.raking import bit_offset, interpolate, rake_softmax, weighted_quantiles
from dpbench.telemetry.wide_table import WIDE_LAYOUT, WideLayout

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -4.0, -1.0
"""Bounds of a Gaussian's log standard deviation: 0.018 <= sd <= 0.37 in the scaled units, where every
real value lies in [0, about 1.2]. The decoder's output is squashed into them smoothly (a clamp would
stop the gradient of every output outside the bounds, and an untrained decoder's outputs start there)."""


QUANTILE_POINTS = 257
"""Points of the monotone maps that take sampled values to released histograms."""
RAKING_CYCLES = 10
"""Passes over the attributes when raking presence rates to the released 2-way marginals."""
VALUE_FIT_ROUNDS = 2
"""Rounds of fitting the values' group shifts and then their maps again (the shifts move the overall
distribution, which the map takes back to the histogram), before the final shifts."""
VALUE_RAKING_CYCLES = 3
"""Passes over the attributes when fitting the group shifts of a value released per several attributes."""
VALUE_SHIFT_LIMIT = 1.5
"""A group's value shift stays within +-1.5 scaled units (the scaled values lie in [0, about 1.15])."""
BISECTION_STEPS = 24
"""Halvings of a shift's interval: 3 / 2^24 scaled units at the end."""
VALUE_MATCHING_ROWS = 65_536
"""Latent draws over which the joint presence and the values are matched (more than for the offsets: a
group's value shift is fitted on its own rows)."""
JOINT_PASSES = 30
"""Fixed-point passes that centre the joint presence draw on the tables' matched rates."""


def _log_sigma(raw: Tensor) -> Tensor:
    """Map unbounded decoder outputs into [LOG_SIGMA_MIN, LOG_SIGMA_MAX] (the midpoint at 0)."""
    return LOG_SIGMA_MIN + (LOG_SIGMA_MAX - LOG_SIGMA_MIN) * torch.sigmoid(raw)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(FastELU())
    return nn.Sequential(*layers)


class _WideVAE(nn.Module, ABC):
    """Encoder, reparameterised latent and decoder; subclasses say how many decoder outputs there are,
    what the reconstruction loss is and how a row is drawn from the decoder's output."""

    def __init__(self, decoder_outputs: int, hidden: tuple[int, ...], latent: int, layout: WideLayout) -> None:
        super().__init__()
        self.layout = layout
        self.latent = latent
        self.width = layout.width
        self.decoder_outputs = decoder_outputs
        self.encoder = _mlp([layout.width, *hidden, 2 * latent])
        self.decoder = _mlp([latent, *reversed(hidden), decoder_outputs])
        self._category_slices = [columns for _, columns in layout.categories.values()]

    def forward(self, rows: Tensor) -> Tensor:
        """``[decoder outputs | latent mean | latent log-variance | input row]`` for each row."""
        mu, logvar = self.encoder(rows).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.cat([self.decoder(z), mu, logvar, rows.detach()], dim=1)

    def _split(self, output: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # One split (its backward writes one gradient tensor) rather than four slices (each slice's
        # backward fills a zero tensor of the whole output, then they are added); the input row
        # needs no gradient.
        decoded, mu, logvar, rows = output.split([self.decoder_outputs, self.latent, self.latent, self.width], dim=1)
        return decoded, mu, logvar, rows.detach()

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch of the negative ELBO; ``target`` (the class-index label) is unused."""
        decoded, mu, logvar, rows = self._split(output)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return (self.reconstruction_loss(decoded, rows) + kl).mean()

    @abstractmethod
    def reconstruction_loss(self, decoded: Tensor, rows: Tensor) -> Tensor:
        """Per-row negative log-likelihood of ``rows`` under the decoder outputs."""

    @abstractmethod
    def draw(self, decoded: Tensor, generator: torch.Generator) -> Tensor:
        """Wide rows sampled from the decoder's output distributions."""

    def _categories_loss(self, logits: Tensor, rows: Tensor) -> Tensor:
        return sum(-(rows[:, s] * F.log_softmax(logits[:, s], dim=1)).sum(dim=1) for s in self._category_slices)

    def _draw_categories(self, logits: Tensor, out: Tensor, generator: torch.Generator) -> None:
        for s in self._category_slices:
            choice = torch.multinomial(F.softmax(logits[:, s], dim=1), 1, generator=generator)
            out[:, s] = F.one_hot(choice[:, 0], s.stop - s.start).to(out.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, batch_size: int = 8192) -> Tensor:
        """``n`` synthetic wide rows (on the CPU): latents from the prior, rows drawn by :meth:`draw`."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        rows = []
        for i in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - i), self.latent, generator=generator).to(device)
            rows.append(self.draw(self.decoder(z).cpu(), generator))
        self.train(was_training)
        return torch.cat(rows) if rows else torch.zeros(0, self.width)


class TabularVAE(_WideVAE):
    """The published baseline: cross-entropy + squared error + KL, cells decoded by their means."""

    def __init__(self, hidden: tuple[int, ...] = (512, 256), latent: int = 64, layout: WideLayout = WIDE_LAYOUT) -> None:
        super().__init__(layout.width, tuple(hidden), latent, layout)
        numeric = torch.ones(layout.width, dtype=torch.bool)
        for s in self._category_slices:
            numeric[s] = False
        self.register_buffer("_numeric", numeric, persistent=False)

    def reconstruction_loss(self, decoded: Tensor, rows: Tensor) -> Tensor:
        squared = ((decoded - rows).pow(2) * self._numeric).sum(dim=1)
        return self._categories_loss(decoded, rows) + squared

    def draw(self, decoded: Tensor, generator: torch.Generator) -> Tensor:
        out = decoded.clamp(min=0.0)
        self._draw_categories(decoded, out, generator)
        return out


class HurdleVAE(_WideVAE):
    """Presence as Bernoulli, day counts and values given presence as log-normal, compositions as
    categoricals; rows are sampled from these distributions.

    ``value_weight`` scales the log-normal terms in the loss. It does not move their own optimum, but
    under per-example clipping it decides how much of a row's clipped gradient they take: with small
    learned variances they would take most of it, starving the compositions and presence bits.
    """

    def __init__(self, hidden: tuple[int, ...] = (512, 256), latent: int = 64, layout: WideLayout = WIDE_LAYOUT,
                 value_weight: float = 0.1) -> None:
        bits, gaussians = list(layout.bits.values()), list(layout.gaussians.values())
        super().__init__(layout.width + len(gaussians), tuple(hidden), latent, layout)
        self.value_weight = value_weight
        self._compositions = [(columns, gate) for _, columns, gate in layout.compositions.values()]
        for name, index in (("_bit_columns", [c for c, _ in bits]),
                            ("_bit_gates", [g if g is not None else -1 for _, g in bits]),
                            ("_gauss_columns", [c for c, _, _ in gaussians]),
                            ("_gauss_gates", [g for _, g, _ in gaussians])):
            self.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("logit_offsets", torch.zeros(layout.width), persistent=False)
        """Added to the logits of categories, bits and compositions when sampling (set by :meth:`match_marginals`)."""
        self._categories_width = sum(columns.stop - columns.start for _, columns in layout.categories.values())
        if any(columns.stop > self._categories_width for _, columns in layout.categories.values()):
            raise ValueError("the layout's categories must come first, in its leading columns")
        self.register_buffer("conditional_offsets", torch.zeros(self._categories_width, layout.width),
                             persistent=False)
        """Added to the logits of a row by the category values drawn for it (row ``c``: the offsets that
        category column ``c`` adds); set by :meth:`match_marginals`."""
        self.register_buffer("value_maps", torch.zeros(len(gaussians), 2, QUANTILE_POINTS), persistent=False)
        self.register_buffer("value_mapped", torch.zeros(len(gaussians), dtype=torch.bool), persistent=False)
        """Per day count and value: whether sampled values go through the monotone map through the
        points (value_maps[j, 0], value_maps[j, 1]) (set by :meth:`match_marginals`; no map until then)."""
        joint = [layout.bits[f"{family}.present"][0] for family in JOINT_PRESENCE]
        self.register_buffer("_joint_columns", torch.tensor(joint, dtype=torch.long), persistent=False)
        patterns = (torch.arange(2 ** len(joint))[:, None] >> torch.arange(len(joint))) & 1
        self.register_buffer("_joint_patterns", patterns.float(), persistent=False)
        self.register_buffer("joint_log_shares", torch.zeros(len(patterns)), persistent=False)
        self.register_buffer("joint_centres", torch.zeros(len(joint)), persistent=False)
        self.register_buffer("joint_matched", torch.tensor(False), persistent=False)
        """The presence bits of ``JOINT_PRESENCE`` are drawn together once matched: a row's pattern with
        probability proportional to the released pattern share times, for each table it holds, the
        row's odds of that table over the centre (set by :meth:`match_marginals`)."""

    def _gate(self, rows: Tensor, gates: Tensor) -> Tensor:
        ones = torch.ones_like(rows[:, :1])
        return torch.cat([rows, ones], dim=1)[:, gates]  # gate -1 reads the appended column of ones

    def reconstruction_loss(self, decoded: Tensor, rows: Tensor) -> Tensor:
        logits, log_sigma = decoded[:, :self.width], decoded[:, self.width:]
        loss = self._categories_loss(logits, rows)
        bits = F.binary_cross_entropy_with_logits(logits[:, self._bit_columns], rows[:, self._bit_columns],
                                                  reduction="none")
        loss = loss + (bits * self._gate(rows, self._bit_gates)).sum(dim=1)
        log_sigma = _log_sigma(log_sigma)
        z = (rows[:, self._gauss_columns] - logits[:, self._gauss_columns]) * torch.exp(-log_sigma)
        loss = loss + self.value_weight * ((0.5 * z.pow(2) + log_sigma) * rows[:, self._gauss_gates]).sum(dim=1)
        for columns, gate in self._compositions:
            cross_entropy = -(rows[:, columns] * F.log_softmax(logits[:, columns], dim=1)).sum(dim=1)
            loss = loss + cross_entropy * rows[:, gate]
        return loss

    def draw(self, decoded: Tensor, generator: torch.Generator) -> Tensor:
        logits, log_sigma = decoded[:, :self.width], _log_sigma(decoded[:, self.width:])
        logits = logits + self.logit_offsets.to(logits.device)
        out = torch.zeros_like(logits)
        self._draw_categories(logits, out, generator)
        logits = logits + out[:, :self._categories_width] @ self.conditional_offsets.to(logits.device)
        probability = torch.sigmoid(logits[:, self._bit_columns])
        out[:, self._bit_columns] = torch.bernoulli(probability, generator=generator)
        if self.joint_matched:
            out[:, self._joint_columns] = self._draw_joint(logits[:, self._joint_columns], generator)
        out[:, self._bit_columns] *= self._gate(out, self._bit_gates)  # browsers only on browsing devices
        noise = torch.randn(log_sigma.shape, generator=generator)
        values = logits[:, self._gauss_columns] + noise * log_sigma.exp()
        for j in self.value_mapped.nonzero().flatten().tolist():
            source, target = self.value_maps[j].to(values.device)
            values[:, j] = interpolate(values[:, j], source, target)
        out[:, self._gauss_columns] = values.clamp(min=0.0) * out[:, self._gauss_gates]
        for columns, gate in self._compositions:
            out[:, columns] = F.softmax(logits[:, columns], dim=1) * out[:, gate, None]
        return out

    @torch.no_grad()
    def match_marginals(self, marginals: Marginals, n: int, generator: torch.Generator) -> None:
        """Calibrate sampling to released ``marginals`` (:mod:`dpbench.telemetry.marginals`).

        Over ``n`` latent draws from the prior, with their categories drawn as sampling will draw them:
        one logit offset per category value, per bit and per composition part such that the mean
        probabilities equal the 1-way marginals (a gated bit's and a composition's among rows weighted
        by their table's presence probability); one more offset per (category value, table presence
        bit), raked over the attributes so that each table's presence rate among each attribute value's
        rows equals the released 2-way marginal; the presence of the ``JOINT_PRESENCE`` tables drawn as
        one pattern, in the released pattern shares moved by each row's odds of each table (centred so
        that the tables' rates stay matched); an offset per (category value, composition part) where the
        groups' mixes are released, so that each group's mean mix is its own; and, for each day count and
        value, the monotone map taking the quantiles of its draws (weighted by presence) to the released
        histogram's, then a shift of the value per attribute value where its sum per value is released, so
        that each group's mean mapped value is its released mean (shrunk towards the model's own). Only how
        many samples fall where changes, not which latent draws they come from. The marginals and the
        model are DP releases, so this is post-processing.
        """
        decoded = self.decoder(torch.randn(n, self.latent, generator=generator).to(self.logit_offsets.device))
        decoded = decoded.cpu().double()
        logits, sigma = decoded[:, :self.width], _log_sigma(decoded[:, self.width:]).exp()
        offsets = torch.zeros(self.width, dtype=torch.float64)
        conditional = torch.zeros(self._categories_width, self.width, dtype=torch.float64)
        groups = self._match_categories(logits, offsets, marginals, generator)
        drawn = self._one_hot(groups, n)

        def probability(column: int) -> Tensor:
            return torch.sigmoid(logits[:, column] + offsets[column] + drawn @ conditional[:, column])

        presence = self._match_bits(logits, offsets, conditional, groups, probability, marginals)
        for name, (_, columns, gate) in self.layout.compositions.items():
            offsets[columns] = rake_softmax(logits[:, columns], presence[gate],
                                            torch.from_numpy(marginals.compositions[name]))
        for (attribute, name), mixes in marginals.compositions_given.items():
            _, columns, gate = self.layout.compositions[name]
            for value, mix in enumerate(mixes):  # a conditional offset per group: its rows' mean mix is its own
                rows = groups[attribute] == value
                if presence[gate][rows].sum() > 0:
                    conditional[self.layout.categories[attribute][1].start + value, columns] = rake_softmax(
                        logits[rows][:, columns] + offsets[columns], presence[gate][rows], torch.from_numpy(mix))
        self.logit_offsets.copy_(offsets)
        self.conditional_offsets.copy_(conditional)
        # the joint presence and the values on a larger draw with these offsets: a group's value shift is
        # fitted on its own rows, a few dozen of n where a table is rare
        logits, sigma, groups, drawn = self._offset_draws(VALUE_MATCHING_ROWS, generator)
        presence = {column: torch.sigmoid(logits[:, column] + offsets[column] + drawn @ conditional[:, column])
                    for column, gate in self.layout.bits.values() if gate is None}
        self._match_joint(presence, marginals)
        columns = self._gauss_columns.cpu()
        draws = logits[:, columns] + sigma * torch.randn(sigma.shape, generator=generator, dtype=torch.float64)
        self._match_values(draws, torch.zeros_like(draws), presence, marginals)
        targets = self._group_targets(draws, presence, groups, marginals)
        for _ in range(VALUE_FIT_ROUNDS if targets else 0):
            self._match_grouped_values(draws, presence, groups, drawn, targets)
            self._match_values(draws, drawn @ self.conditional_offsets.double()[:, columns], presence, marginals)
        self._match_grouped_values(draws, presence, groups, drawn, targets)

    def _offset_draws(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
        """``n`` latent draws from the prior: their logits and value deviations, and their category values drawn
        with the category offsets (index per attribute, and one-hot)."""
        decoded = self.decoder(torch.randn(n, self.latent, generator=generator).to(self.logit_offsets.device))
        decoded = decoded.cpu().double()
        logits, sigma = decoded[:, :self.width], _log_sigma(decoded[:, self.width:]).exp()
        offsets = self.logit_offsets.double()
        groups = {name: torch.multinomial(torch.softmax(logits[:, columns] + offsets[columns], 1), 1,
                                          generator=generator)[:, 0]
                  for name, (_, columns) in self.layout.categories.items()}
        return logits, sigma, groups, self._one_hot(groups, n)

    def _one_hot(self, groups: dict[str, Tensor], n: int) -> Tensor:
        """The category columns of ``n`` rows whose category values are ``groups`` (index per attribute)."""
        drawn = torch.zeros(n, self._categories_width, dtype=torch.float64)
        for name, (_, columns) in self.layout.categories.items():
            drawn[torch.arange(n), columns.start + groups[name]] = 1.0
        return drawn

    def _match_categories(self, logits: Tensor, offsets: Tensor, marginals: Marginals,
                              generator: torch.Generator) -> dict[str, Tensor]:
        """Set the category offsets; returns each row's category values drawn with them."""
        ones = torch.ones(len(logits), dtype=torch.float64)
        groups = {}
        for name, (_, columns) in self.layout.categories.items():
            offsets[columns] = rake_softmax(logits[:, columns], ones, torch.from_numpy(marginals.categories[name]))
            probabilities = torch.softmax(logits[:, columns] + offsets[columns], 1)
            groups[name] = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        return groups

    def _match_bits(self, logits: Tensor, offsets: Tensor, conditional: Tensor, groups: dict[str, Tensor],
                        probability: Callable[[int], Tensor], marginals: Marginals) -> dict[int, Tensor]:
        """Set the bits' offsets (presence bits raked to their 2-way rates, then the gated bits);
        returns each bit's probability per row."""
        ones = torch.ones(len(logits), dtype=torch.float64)
        presence: dict[int, Tensor] = {}
        for j, (name, (column, gate)) in enumerate(self.layout.bits.items()):
            if gate is not None:
                continue
            offsets[column] = bit_offset(logits[:, column], ones, float(marginals.bit_rates[j]))
            family = name.removesuffix(".present")
            given = [attribute for attribute, paired in marginals.presence_given if paired == family]
            for _ in range(RAKING_CYCLES if given else 0):
                for attribute in given:
                    target = torch.from_numpy(marginals.presence_given[attribute, family])
                    size = torch.bincount(groups[attribute], minlength=len(target)).double()
                    mean = torch.bincount(groups[attribute], probability(column), minlength=len(target))
                    mean = mean / size.clamp_min(1)
                    step = torch.logit(target.clamp(1e-6, 1 - 1e-6)) - torch.logit(mean.clamp(1e-6, 1 - 1e-6))
                    conditional[self.layout.categories[attribute][1], column] += torch.where(size > 0, step, 0.0)
            presence[column] = probability(column)
        for j, (column, gate) in enumerate(self.layout.bits.values()):
            if gate is not None:
                offsets[column] = bit_offset(logits[:, column], presence[gate], float(marginals.bit_rates[j]))
                presence[column] = probability(column)
        return presence

    def _joint_probabilities(self, logits: Tensor) -> Tensor:
        """Each row's probability of each presence pattern of ``JOINT_PRESENCE``, given the logits of
        its tables' presence."""
        patterns = self._joint_patterns.to(logits)
        lift = (logits - self.joint_centres.to(logits)) @ patterns.T
        return torch.softmax(self.joint_log_shares.to(logits) + lift, dim=1)

    def _draw_joint(self, logits: Tensor, generator: torch.Generator) -> Tensor:
        pattern = torch.multinomial(self._joint_probabilities(logits), 1, generator=generator)[:, 0]
        return self._joint_patterns.to(logits)[pattern]

    def _match_joint(self, presence: dict[int, Tensor], marginals: Marginals) -> None:
        """Set the joint presence draw: the released pattern shares, and centres such that each table's
        mean presence over the rows is what the bits were matched to (a few fixed-point passes)."""
        probability = torch.stack([presence[c] for c in self._joint_columns.tolist()], dim=1)
        logits = torch.logit(probability.clamp(1e-9, 1 - 1e-9))
        target = torch.logit(probability.mean(0).clamp(1e-9, 1 - 1e-9))
        self.joint_log_shares.copy_(torch.from_numpy(marginals.joint_presence).log())
        self.joint_centres.copy_(target)
        for _ in range(JOINT_PASSES):
            for i in range(len(target)):  # one table at a time: a joint step overshoots where patterns share tables
                rate = (self._joint_probabilities(logits) @ self._joint_patterns[:, i].to(logits)).mean()
                self.joint_centres[i] += torch.logit(rate.clamp(1e-9, 1 - 1e-9)) - target[i]
        self.joint_matched.fill_(True)

    def _match_values(self, draws: Tensor, shifted: Tensor, presence: dict[int, Tensor],
                      marginals: Marginals) -> None:
        """Set the monotone maps of the day counts and values that have a released histogram: each takes the
        quantiles of the value's draws ``draws[:, j]`` plus the rows' group shifts ``shifted[:, j]`` (weighted
        by presence) to the histogram's."""
        quantiles = torch.linspace(0.0, 1.0, QUANTILE_POINTS, dtype=torch.float64)
        for j, (name, (_, gate, _)) in enumerate(self.layout.gaussians.items()):
            target = marginals.quantiles(name, quantiles.numpy())
            if target is None:
                self.value_mapped[j] = False
                continue
            source = weighted_quantiles(draws[:, j] + shifted[:, j], presence[gate], quantiles)
            self.value_maps[j] = torch.stack([source, torch.from_numpy(target)]).to(self.value_maps)
            self.value_mapped[j] = True

    def _mapped(self, values: Tensor, j: int) -> Tensor:
        """Values of day count or value ``j`` as sampling returns them: through its map, at zero or above."""
        if bool(self.value_mapped[j]):
            source, target = self.value_maps[j].double()
            values = interpolate(values, source, target)
        return values.clamp(min=0.0)

    def _group_targets(self, draws: Tensor, presence: dict[int, Tensor], groups: dict[str, Tensor],
                       marginals: Marginals) -> dict[tuple[str, str], Tensor]:
        """Per pair of ``marginals.value_sums``, each group's target mean: the released mean shrunk towards
        the mean the model gives the group before any group shift (:meth:`Marginals.group_means`)."""
        names = list(self.layout.gaussians)
        targets = {}
        for attribute, name in marginals.value_sums:
            j = names.index(name)
            _, gate, _ = self.layout.gaussians[name]
            size = len(marginals.value_sums[attribute, name])
            weights = presence[gate]
            total = torch.bincount(groups[attribute], weights, minlength=size)
            mapped = torch.bincount(groups[attribute], weights * self._mapped(draws[:, j], j), minlength=size)
            prior = torch.where(total > 0, mapped / total.clamp_min(1e-12), 0.0)
            targets[attribute, name] = torch.from_numpy(marginals.group_means((attribute, name), prior.numpy()))
        return targets

    def _match_grouped_values(self, draws: Tensor, presence: dict[int, Tensor], groups: dict[str, Tensor],
                              drawn: Tensor, targets: dict[tuple[str, str], Tensor]) -> None:
        """Per (attribute value, value summary) of ``targets``, a shift of the value before its monotone map (a
        conditional offset of its column) such that the presence-weighted mean of the mapped values of that
        attribute value's rows is its target; shifts of several attributes on one value are fitted in turn
        (``VALUE_RAKING_CYCLES``)."""
        names = list(self.layout.gaussians)
        shifts = self.conditional_offsets.double()
        shared = len({name for _, name in targets}) < len(targets)  # a value with shifts of several attributes
        for _ in range(VALUE_RAKING_CYCLES if shared else 1):
            for (attribute, name), means in targets.items():
                j = names.index(name)
                column, gate, _ = self.layout.gaussians[name]
                first = self.layout.categories[attribute][1].start
                own = shifts[first:first + len(means), column][groups[attribute]]
                base = draws[:, j] + drawn @ shifts[:, column] - own
                shifts[first:first + len(means), column] = self._value_shifts(base, presence[gate], groups[attribute],
                                                                              j, means)
        self.conditional_offsets.copy_(shifts)

    def _value_shifts(self, values: Tensor, weights: Tensor, group: Tensor, j: int, targets: Tensor) -> Tensor:
        """Per group, the shift ``s`` (bisection within +-VALUE_SHIFT_LIMIT, all groups at once) such that the
        ``weights``-weighted mean of the mapped ``values + s`` of the group's rows is its target; a group
        without weight gets no shift."""
        size = len(targets)
        total = torch.bincount(group, weights, minlength=size)
        low = torch.full((size,), -VALUE_SHIFT_LIMIT, dtype=torch.float64)
        high = torch.full((size,), VALUE_SHIFT_LIMIT, dtype=torch.float64)
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            mapped = self._mapped(values + middle[group], j)
            below = torch.bincount(group, weights * mapped, minlength=size) < targets * total
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        return torch.where(total > 0, (low + high) / 2, 0.0)
