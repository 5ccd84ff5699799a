"""The behaviour parameters of the scenario engine, each a distribution with the place it came from.

- **diversion**: of the people blocked at a target, which share goes to which destination instead of waiting. The
  split (destinations and waiting) is Dirichlet, so each destination's share is Beta with the given mean; ``sd`` is
  the sd of the total share diverting (0: known exactly).
- **divert_lag**: days from being blocked to showing up at the destination's departure points (:class:`Delay`).
- **release**: days, counted from the reopening day, after which each waiting person leaves (:class:`Delay`;
  Erlang-2 by default, as the simulator's ``reopen_spread_days``).
- **transit**: how unsure the links' lags are (``sd_share``: relative sd of a link's mean lag) and how alike
  people's transit times are (``shape``).

Every parameter carries ``source``: ``default``, ``planner`` (the scenario's assumptions) or ``estimated from …``
(``delay_from_samples`` and ``diversion_from_counts`` turn observations into parameters). The defaults mirror the
simulator's closure (``simulator/simulator.toml``) where it has a figure, with a modest uncertainty around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationError, model_validator

from forecasting.scenario.spec import (
    DelayAssumption,
    DiversionShare,
    InterventionAssumptions,
    ScenarioSpec,
    Target,
    _Frozen,
    _one_sentence,
)

__all__ = [
    "BlockParameters",
    "DEFAULT_PARAMETERS",
    "Delay",
    "Diversion",
    "ScenarioParameters",
    "Transit",
    "delay_from_samples",
    "diversion_from_counts",
    "load_parameters",
]

PLANNER = "planner"


class Delay(_Frozen):
    """A delay in days: ``mean`` (days); ``sd`` (days): how unsure the mean is, drawn per Monte Carlo draw from a
    Gamma (0: known); ``shape``: people's delays around that mean are Gamma with this shape (0: everyone exactly
    the mean; 1: exponential; 2: Erlang-2; large: nearly all alike)."""

    mean: float = Field(ge=0.0)
    sd: float = Field(default=0.0, ge=0.0)
    shape: float = Field(default=0.0, ge=0.0)
    source: str = "default"

    def overridden(self, assumption: DelayAssumption | None) -> Delay:
        """This delay with the fields the planner set replaced (source ``planner``)."""
        if assumption is None or not assumption.model_fields_set:
            return self
        update = {name: getattr(assumption, name) for name in assumption.model_fields_set}
        return self.model_copy(update={**update, "source": PLANNER})

    def draw_means(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of the mean delay (days)."""
        shape = (self.mean / self.sd) ** 2 if self.sd > 0 else 0.0
        if shape <= 0.0:
            return np.full(n, self.mean)
        return rng.gamma(shape, self.mean / shape, size=n)


class Diversion(_Frozen):
    """Where people blocked at a target go instead of waiting: ``to`` (destinations with mean shares, adding up to
    at most 1; the rest wait) and ``sd``, the sd of the total share diverting (0: shares known exactly)."""

    to: tuple[DiversionShare, ...] = ()
    sd: float = Field(default=0.0, ge=0.0)
    source: str = "default"

    @model_validator(mode="after")
    def _feasible(self) -> Diversion:
        total = self.total
        if total > 1.0 + 1e-9:
            raise ValueError(f"the divert shares add up to {total:g}, more than 1")
        if self.sd > 0 and 0.0 < total < 1.0 and self.sd**2 >= total * (1.0 - total):
            limit = math.sqrt(total * (1.0 - total))
            raise ValueError(
                f"divert_sd {self.sd:g} is too large for a divert share of {total:g}; keep it below {limit:.3g}"
            )
        return self

    @property
    def total(self) -> float:
        """The mean share of blocked people who divert (all destinations)."""
        return float(sum(d.share for d in self.to))

    def draw_shares(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of the destinations' shares, shape (n, len(to)); rows add up to at most 1."""
        means = np.array([d.share for d in self.to] + [max(0.0, 1.0 - self.total)])
        total = self.total
        if self.sd == 0.0 or not 0.0 < total < 1.0:
            return np.tile(means[:-1], (n, 1))
        concentration = total * (1.0 - total) / self.sd**2 - 1.0
        alpha = means * concentration
        gammas = np.zeros((n, len(means)))
        positive = alpha > 0
        gammas[:, positive] = rng.gamma(alpha[positive], size=(n, int(positive.sum())))
        return gammas[:, :-1] / gammas.sum(axis=1, keepdims=True)


class Transit(_Frozen):
    """Transit times along the links: each link's mean lag is its ``lag_days`` times a Gamma factor of mean 1 and
    sd ``sd_share`` (0: known); people's transit times are Gamma with ``shape`` around it (0: all exactly)."""

    sd_share: float = Field(default=0.2, ge=0.0)
    shape: float = Field(default=4.0, ge=0.0)
    source: str = "default"

    def draw_factors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of the factor on a link's lag."""
        if self.sd_share == 0.0:
            return np.ones(n)
        shape = 1.0 / self.sd_share**2
        return rng.gamma(shape, 1.0 / shape, size=n)


class BlockParameters(_Frozen):
    """What happens to the people a closure or capacity cut blocks at one target."""

    diversion: Diversion = Diversion(source="default: nobody diverts unless the planner or an estimate says where to")
    divert_lag: Delay = Delay(mean=10.0, sd=3.0, shape=4.0, source="default: the simulator's lag_days (10), ±3 days")
    release: Delay = Delay(
        mean=3.0, sd=1.0, shape=2.0, source="default: the simulator's reopen_spread_days (3, Erlang-2), ±1 day"
    )

    def overridden(self, assumptions: InterventionAssumptions | None) -> BlockParameters:
        """These parameters with what the planner set in an intervention's ``assumptions``."""
        if assumptions is None:
            return self
        diversion = self.diversion
        if assumptions.divert is not None or assumptions.divert_sd is not None:
            diversion = Diversion(
                to=assumptions.divert if assumptions.divert is not None else diversion.to,
                sd=assumptions.divert_sd if assumptions.divert_sd is not None else diversion.sd,
                source=PLANNER,
            )
        return BlockParameters(
            diversion=diversion,
            divert_lag=self.divert_lag.overridden(assumptions.divert_lag_days),
            release=self.release.overridden(assumptions.release_days),
        )


class ScenarioParameters(_Frozen):
    """All the engine's parameters: ``default`` for any blocked target, ``by_target`` for specific ones (keyed by
    the target as written, ``point:<route>/<point>``, e.g. estimated), ``transit``, and ``day_correlation``: the
    day-to-day correlation (0..1) of a forecast's misses when the baseline paths are drawn."""

    default: BlockParameters = BlockParameters()
    by_target: dict[str, BlockParameters] = {}
    transit: Transit = Transit(source="default: link lags ±20 %, people's transit times Gamma with shape 4")
    day_correlation: float = Field(default=0.8, ge=0.0, lt=1.0)

    def for_target(self, target_key: str, assumptions: InterventionAssumptions | None) -> BlockParameters:
        """The parameters of one blocked target: ``by_target`` or ``default``, then the planner's assumptions."""
        return self.by_target.get(target_key, self.default).overridden(assumptions)

    def with_spec(self, spec: ScenarioSpec) -> ScenarioParameters:
        """These parameters with the scenario's own ``assumptions`` (transit) applied."""
        transit = spec.assumptions.transit
        if transit is None or not transit.model_fields_set:
            return self
        update = {name: getattr(transit, name) for name in transit.model_fields_set}
        return self.model_copy(update={"transit": self.transit.model_copy(update={**update, "source": PLANNER})})


DEFAULT_PARAMETERS = ScenarioParameters()


def delay_from_samples(days: Sequence[float] | np.ndarray, source: str) -> Delay:
    """A delay from observed delays in days (e.g. journeys' transit times): the sample mean, its standard error
    as ``sd``, and the Gamma ``shape`` with the sample's mean and variance (0 if they are all alike).

    Needs at least 2 finite, non-negative samples (``ValueError`` otherwise)."""
    x = np.asarray(days, dtype="float64")
    if x.size < 2 or not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"need at least 2 finite delays >= 0 in days, got {x.size} values")
    mean, var = float(x.mean()), float(x.var(ddof=1))
    shape = mean**2 / var if var > 0 else 0.0
    return Delay(mean=mean, sd=math.sqrt(var / x.size), shape=shape, source=source)


def diversion_from_counts(diverted: Mapping[str, int], waited: int, source: str, prior: float = 1.0) -> Diversion:
    """A diversion from counted people: ``diverted`` (destination target -> people seen going there) and ``waited``
    (people seen waiting). The posterior of the split under a Dirichlet(``prior``, …) prior: mean shares
    ``(count + prior) / (all + k prior)`` and the sd of the total share that goes with it."""
    if waited < 0 or any(c < 0 for c in diverted.values()):
        raise ValueError("counts of people must be >= 0")
    alpha = {to: c + prior for to, c in diverted.items()}
    total_alpha = sum(alpha.values()) + waited + prior
    to = tuple(DiversionShare(to=Target.model_validate(t), share=a / total_alpha) for t, a in alpha.items())
    m = sum(d.share for d in to)
    sd = math.sqrt(m * (1.0 - m) / (total_alpha + 1.0)) if 0.0 < m < 1.0 else 0.0
    return Diversion(to=to, sd=sd, source=source)


def load_parameters(path: Path) -> ScenarioParameters:
    """The parameters kept in ``path`` (``ScenarioParameters`` as JSON, e.g. written by ``routecast scenario
    estimate``); ``ValueError`` in one sentence for a file that is missing or not valid parameters."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"scenario parameters {path}: {exc.strerror or exc}") from None
    try:
        return ScenarioParameters.model_validate_json(text)
    except ValidationError as err:
        raise ValueError(f"scenario parameters {path}: {_one_sentence(err)}") from None
