"""Differential privacy's mechanisms as plain maths: no Spark, no files.

The unit of privacy is the **person-day**: bronze device ids are pseudonyms that rotate daily, so one
``(device_id, date)`` is one person on one day. A **release** is the set of tables published for one data date;
each is (ε, δ)-differentially private for its noisy counts with respect to adding or removing one person-day.

Here: the secret and the keys derived from it; the contribution bound (``ContributionBound``) and the sensitivities
it implies; the split of a release's (ε, δ) over its queries (``split_budget``, ``plan_release``); the noise scale
of each mechanism (Laplace b = Δ₁/ε, the analytic Gaussian σ); and the seeded noise of one value
(``seeded_noise``). Randomness is not drawn from a generator but derived from a keyed hash (SHA-256 of a key
derived from ``dp_secret``, the charge's salt, the column and the row's key), so a release re-run on the same data
is reproduced exactly, which is what makes a re-run free in the ledger (``jobs.privacy.ledger``).
``jobs.privacy.noise`` computes the same values as Spark column expressions over whole tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from jobs.settings import DEFAULT_DP_SECRET, JobSettings, dp_secret_problem

if TYPE_CHECKING:
    from jobs.privacy.ledger import Charge

Mechanism = Literal["laplace", "gaussian"]
TableKind = Literal["density", "density_hourly", "flows"]

# The default of settings.dp_secret: DP refuses to run with it (anyone could recompute the noise).
DEFAULT_SECRET = DEFAULT_DP_SECRET
# Contribution bounds that have no setting yet (see ContributionBound).
DEFAULT_MAX_PINGS_PER_CELL = 4  # pings of one person-day in one finest cell (the simulator's phones: ~4 a day)
DEFAULT_MAX_CELL_HOURS = 24  # (cell, hour) slots of one person-day counted in the hourly tables
# What each key is derived for (derive_key): one key per purpose, none recomputable from another.
NOISE_KEY, BOUND_KEY, FINGERPRINT_KEY = "noise", "contribution-bound", "fingerprint"
# A uniform variate is made of 13 hex digits (52 bits) of a SHA-256 hex digest: chunk 0 gives u1, chunk 1 u2.
UNIFORM_HEX_DIGITS = 13
UNIFORM_BITS = 4 * UNIFORM_HEX_DIGITS


class DPConfigError(ValueError):
    """Differential privacy is asked for but cannot run safely as configured."""


# --------------------------------------------------------------------------------------------------------------
# Secret and keys


def require_dp(settings: JobSettings) -> str:
    """The DP secret, after checking that DP is on and the secret is neither the default nor weak
    (:func:`jobs.settings.dp_secret_problem`); raises ``DPConfigError``."""
    if settings.dp_mechanism == "none":
        raise DPConfigError("differential privacy is off (ROUTECAST_DP_MECHANISM=none); set laplace or gaussian")
    secret = settings.dp_secret.get_secret_value()
    check_secret(secret)
    return secret


def check_secret(secret: str) -> None:
    """Raise ``DPConfigError`` for a secret that cannot seed noise (``jobs.settings.dp_secret_problem``).

    JobSettings refuses such secrets when DP is on; settings made without validation (model_copy) are caught here.
    """
    problem = dp_secret_problem(secret)
    if problem:
        raise DPConfigError(problem)


def derive_key(secret: str, purpose: str) -> str:
    """A per-purpose key (hex) derived from the secret, so the secret itself never appears in Spark plans.

    The derived keys do appear there (as literals: ``explain()``, the Spark UI, event logs); whoever holds the
    noise key can recompute every release's noise, so protect those like the secret (or rotate the secret).
    """
    return hmac.new(secret.encode(), f"routecast/dp/{purpose}/v1".encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Contribution bound and sensitivities


class Sensitivity(NamedTuple):
    """How much one person-day can change a published table, as the L1 and L2 norm of the change."""

    l1: float
    l2: float


@dataclass(frozen=True)
class ContributionBound:
    """What one person-day may contribute to a release once its rows are bounded
    (``jobs.privacy.noise.bound_contributions``).

    - ``max_cells``: distinct finest-resolution cells (``settings.dp_max_cells_per_device_day``). Coarser cells are
      parents of these, so a person-day touches at most ``max_cells`` cells at every resolution.
    - ``max_pings``: pings per (person-day, finest cell), summed over the hours. A person-day's pings in any one
      table total at most ``max_cells * max_pings``.
    - ``max_cell_hours``: (cell, hour) slots per person-day that count in the hourly tables (rows flagged
      ``in_hourly``); without it a person-day could add 1 to ``24 * max_cells`` hourly counts.
    """

    max_cells: int
    max_pings: int = DEFAULT_MAX_PINGS_PER_CELL
    max_cell_hours: int = DEFAULT_MAX_CELL_HOURS

    def __post_init__(self) -> None:
        for name in ("max_cells", "max_pings", "max_cell_hours"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: JobSettings) -> ContributionBound:
        return cls(max_cells=settings.dp_max_cells_per_device_day)

    def as_params(self) -> dict[str, int]:
        """The bound as plain values, for ``fingerprint(params=...)``."""
        return asdict(self)

    def sensitivity(self, kind: TableKind, column: str, *, places: int | None = None) -> Sensitivity:
        """Sensitivity of one column of one table at one resolution, given rows bounded by this bound.

        ``density``: per (cell, res, date); ``density_hourly``: per (cell, res, date, hour), from ``in_hourly`` rows
        only; ``flows``: distinct devices per (from, to, date), from the bounded rows only. ``places`` (flows) is how
        many distinct places a person-day's bounded rows can map to (default ``max_cells``: cells at any
        resolution; pass more if a cell can belong to several route segments). ``devices`` is a distinct count, so
        a person-day adds at most 1 to each count it touches; ``pings`` can pile up in one coarse cell, so its L2
        is its L1.
        """
        k, p, m = self.max_cells, self.max_pings, self.max_cell_hours
        if kind == "density" and column == "devices":
            return Sensitivity(k, math.sqrt(k))
        if kind == "density_hourly" and column == "devices":
            return Sensitivity(m, math.sqrt(m))
        if kind in ("density", "density_hourly") and column == "pings":
            return Sensitivity(k * p, k * p)
        if kind == "flows" and column == "devices":
            n = places if places is not None else k
            pairs = n * (n - 1)  # distinct ordered (from, to) pairs among n places
            return Sensitivity(pairs, math.sqrt(pairs))
        raise ValueError(f"no sensitivity for column {column!r} of a {kind!r} table")


# --------------------------------------------------------------------------------------------------------------
# Budget split and noise scale


def split_budget(epsilon: float, delta: float, weights: int | Sequence[float]) -> list[tuple[float, float]]:
    """Split a release's (ε, δ) over its queries by basic sequential composition.

    ``weights`` is the number of queries (equal shares) or one positive weight per query. Query i gets
    ``(ε·w_i/Σw, δ·w_i/Σw)``; the k queries together are (ε, δ)-DP. Every (table, column, resolution) a release
    publishes is one query: a person-day appears at every resolution, so resolutions do not compose in parallel.
    """
    ws = [1.0] * weights if isinstance(weights, int) else [float(w) for w in weights]
    if not ws or any(w <= 0 for w in ws):
        raise ValueError(f"split_budget needs at least one positive weight, got {weights!r}")
    total = math.fsum(ws)
    return [(epsilon * w / total, delta * w / total) for w in ws]


def _phi(x: float) -> float:
    """Standard normal CDF, accurate in the tails."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_delta(sigma: float, epsilon: float, l2_sensitivity: float) -> float:
    """The exact δ at which the Gaussian mechanism with ``sigma`` is ε-DP (Balle & Wang 2018, Theorem 8)."""
    a, b = l2_sensitivity / (2.0 * sigma), epsilon * sigma / l2_sensitivity
    tail = _phi(-a - b)
    return _phi(a - b) - (math.exp(min(epsilon + math.log(tail), 700.0)) if tail > 0.0 else 0.0)


def gaussian_sigma(epsilon: float, delta: float, l2_sensitivity: float, *, analytic: bool = True) -> float:
    """Noise standard deviation of the Gaussian mechanism for (ε, δ) and an L2 sensitivity.

    ``analytic`` (default): the analytic Gaussian mechanism of Balle & Wang (ICML 2018) — the smallest σ whose
    exact privacy profile (``gaussian_delta``) is at most δ, found by bisection; valid for every ε > 0 and never
    larger than the classic bound. Otherwise the classic σ = Δ₂·√(2 ln(1.25/δ))/ε (Dwork & Roth, Thm A.1), which is
    only valid for ε < 1.
    """
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"the Gaussian mechanism needs epsilon > 0 and 0 < delta < 1, got ({epsilon}, {delta})")
    if l2_sensitivity == 0:
        return 0.0
    classic = l2_sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon
    if not analytic:
        if epsilon >= 1:
            raise ValueError(f"the classic Gaussian bound needs epsilon < 1, got {epsilon}; use analytic=True")
        return classic
    hi = classic
    while gaussian_delta(hi, epsilon, l2_sensitivity) > delta:
        hi *= 2.0
    lo = hi
    while gaussian_delta(lo, epsilon, l2_sensitivity) <= delta:
        lo /= 2.0
    for _ in range(200):  # δ(σ) decreases in σ: keep lo failing and hi passing
        mid = math.sqrt(lo * hi)
        if gaussian_delta(mid, epsilon, l2_sensitivity) <= delta:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-12:
            break
    return hi


def noise_scale(
    mechanism: Mechanism, epsilon: float, delta: float, l1_sensitivity: float, l2_sensitivity: float
) -> float:
    """The Laplace scale b = Δ₁/ε, or the Gaussian σ (analytic, ``gaussian_sigma``)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if mechanism == "laplace":
        return l1_sensitivity / epsilon
    if mechanism == "gaussian":
        return gaussian_sigma(epsilon, delta, l2_sensitivity)
    raise ValueError(f"unknown DP mechanism {mechanism!r}; expected laplace or gaussian")


@dataclass(frozen=True)
class Query:
    """One kind of noised count a release publishes. ``count`` is how many such queries (e.g. one per resolution,
    all noised in one ``add_noise`` call); ``weight`` its relative share of the budget per query."""

    kind: TableKind
    column: str
    count: int = 1
    weight: float = 1.0
    places: int | None = None  # flows only; see ContributionBound.sensitivity


@dataclass(frozen=True)
class NoiseParams:
    """The keyword arguments of one ``add_noise`` call.

    ``add_noise(df, [column], keys, secret=secret, floor=min_devices + 1, **params.kwargs())``
    """

    mechanism: Mechanism
    epsilon: float
    delta: float
    l1_sensitivity: float
    l2_sensitivity: float
    salt: str

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The fields as keyword arguments, e.g. ``kwargs(salt=salt_column("date", salts))`` for several dates."""
        return asdict(self) | overrides

    @property
    def scale(self) -> float:
        """Laplace b or Gaussian σ of this query's noise (the noise std is √2·b, resp. σ)."""
        return noise_scale(self.mechanism, self.epsilon, self.delta, self.l1_sensitivity, self.l2_sensitivity)


def plan_release(charge: Charge, bound: ContributionBound, queries: Mapping[str, Query]) -> dict[str, NoiseParams]:
    """Noise parameters per named query of a release: the charge's (ε, δ) split by ``split_budget`` over
    Σ count queries (by weight), the sensitivities from ``bound``, and a salt per name from the charge.

    Uses the charge's mechanism, ε and δ (not the settings'): a free re-charge must reproduce the original noise.
    """
    if not queries:
        raise ValueError("plan_release needs at least one query")
    if any(q.count < 1 for q in queries.values()):
        raise ValueError("every query needs count >= 1")
    # split_budget over every single query; queries of one name share its weight, hence one share each.
    shares = split_budget(charge.epsilon, charge.delta, [q.weight for q in queries.values() for _ in range(q.count)])
    plan = {}
    position = 0
    for name, q in queries.items():
        eps, delta = shares[position]
        position += q.count
        s = bound.sensitivity(q.kind, q.column, places=q.places)
        plan[name] = NoiseParams(charge.mechanism, eps, delta, s.l1, s.l2, f"{charge.salt}/{name}")
    return plan


# --------------------------------------------------------------------------------------------------------------
# Seeded noise


def noise_tag(mechanism: Mechanism, scale: float) -> str:
    """The mechanism and scale as hashed into every noise value (see ``noise_message``)."""
    return f"{mechanism}:{scale!r}"


def noise_message(salt: str, tag: str, column: str, key: Mapping[str, Any]) -> str:
    """What is hashed, after the noise key, to seed the noise of one value: the JSON object
    ``{"salt", "params", "column", "key"}`` exactly as Spark's ``to_json`` writes it (compact, null key fields left
    out), for keys of strings, integers, booleans and dates.

    The scale is in it (``tag``): should a caller change the noise parameters without a new charge, the noise is
    independent (an under-charge) instead of the old noise rescaled, which would reveal the counts exactly by
    solving two equations.
    """
    fields = {}
    for name, value in key.items():
        if value is None:
            continue
        if isinstance(value, float | dt.datetime):  # Spark writes these its own way: not reproduced here
            raise TypeError(
                f"noise_message: key column {name!r} is a {type(value).__name__}; use ints, strings or dates"
            )
        fields[name] = value.isoformat() if isinstance(value, dt.date) else value
    message = {"salt": salt, "params": tag, "column": column, "key": fields}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def uniform(digest: str, chunk: int) -> float:
    """A uniform variate in the open interval (0, 1) from the ``chunk``-th 52 bits of a SHA-256 hex digest."""
    bits = int(digest[UNIFORM_HEX_DIGITS * chunk : UNIFORM_HEX_DIGITS * (chunk + 1)], 16)
    return (bits + 0.5) / float(2**UNIFORM_BITS)


def laplace(scale: float, u: float) -> float:
    """Laplace(0, ``scale``) noise from one uniform variate, by the inverse CDF."""
    centred = u - 0.5
    sign = math.copysign(1.0, centred) if centred else 0.0
    return -scale * sign * math.log(1.0 - 2.0 * abs(centred))


def gaussian(scale: float, u1: float, u2: float) -> float:
    """Normal(0, ``scale``²) noise from two uniform variates, by Box–Muller."""
    return scale * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def seeded_noise(
    mechanism: Mechanism, scale: float, secret: str, salt: str, column: str, key: Mapping[str, Any]
) -> float:
    """The noise of one value: a function of (secret, salt, mechanism and scale, column, row key) and nothing else.

    The digest is SHA-256 of the noise key (``derive_key(secret, NOISE_KEY)``) followed by ``noise_message``; its
    first two 52-bit chunks are the uniform variates.
    """
    check_secret(secret)
    message = noise_message(salt, noise_tag(mechanism, scale), column, key)
    digest = hashlib.sha256((derive_key(secret, NOISE_KEY) + message).encode()).hexdigest()
    if mechanism == "laplace":
        return laplace(scale, uniform(digest, 0))
    if mechanism == "gaussian":
        return gaussian(scale, uniform(digest, 0), uniform(digest, 1))
    raise ValueError(f"unknown DP mechanism {mechanism!r}; expected laplace or gaussian")


def noisy_count(value: int, noise: float, floor: int = 0) -> int:
    """What is published for a true count: ``max(floor, round(value + noise))``, halves rounded away from zero (as
    Spark's ``round``). Rounding and clamping are post-processing, so they keep the guarantee."""
    rounded = int(Decimal(repr(float(value) + noise)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(floor, rounded)
