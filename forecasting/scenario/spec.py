"""The scenario specification a planner writes: interventions on the route network and the assumptions they override.

A scenario is JSON or TOML (or a mapping), for example::

    name = "Zuwara closed four weeks"
    seed = 7

    [[interventions]]
    kind = "closure"                               # closure | capacity_cut | surge
    target = "point:central_mediterranean/zuwara"  # point:<route>/<point>, segment:<route>/<segment>, route:<route>
    start = 2026-12-01                             # first day of the intervention
    end = 2026-12-28                               # last day (inclusive); it reopens the day after
    [interventions.assumptions]
    divert = [
        { to = "route:eastern_mediterranean", share = 0.3 },
        { to = "point:central_mediterranean/zarzis", share = 0.2 },
    ]
    divert_sd = 0.1                  # uncertainty (sd) of the total share that diverts
    divert_lag_days = { mean = 10, sd = 3 }
    release_days = { mean = 3 }      # after reopening, the backlog leaves over about this many days

    [[interventions]]
    kind = "surge"
    target = "route:western_african"
    factor = 2.0                     # departures x 2 (a factor below 1 is a drop)
    start = 2026-12-05
    end = 2026-12-18

Shape errors (a missing field, an unknown kind, end before start, a factor <= 0, a share outside [0, 1]) raise
:class:`ScenarioError` with one sentence naming the field and the value; what needs the network and the forecasts
(unknown targets, overlapping interventions, dates outside the horizon) is checked by
``forecasting.scenario.plan.validate``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "KINDS",
    "CapacityCut",
    "Closure",
    "DelayAssumption",
    "DiversionShare",
    "Intervention",
    "InterventionAssumptions",
    "ScenarioError",
    "ScenarioSpec",
    "SpecAssumptions",
    "Surge",
    "Target",
    "TransitAssumption",
    "load_spec",
    "parse_spec",
    "spec_from_json",
    "spec_from_toml",
]

KINDS = ("closure", "capacity_cut", "surge")
_TARGET = re.compile(r"(?P<level>point|segment|route):(?P<rest>[^/\s]+(?:/[^/\s]+)?)")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one sentence naming the field and the value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Frozen):
    """Where an intervention acts: a crossing point, a segment or a whole route.

    Written as a string, ``point:<route>/<point>``, ``segment:<route>/<segment>``, ``route:<route>`` or a bare point
    id (``zuwara``, resolved against the network when it names one point only), or as a table with ``route`` and
    at most one of ``segment`` and ``point``.
    """

    route: str | None = None
    segment: str | None = None
    point: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        m = _TARGET.fullmatch(value.strip())
        if m is None:
            if re.fullmatch(r"[a-z][a-z0-9_]*", value.strip()):
                return {"point": value.strip()}
            raise ValueError(
                f"target {value!r} is not point:<route>/<point>, segment:<route>/<segment>, route:<route> or a point id"
            )
        level, rest = m["level"], m["rest"]
        if level == "route":
            if "/" in rest:
                raise ValueError(f"target {value!r}: a route target is route:<route>, without a slash")
            return {"route": rest}
        if "/" not in rest:
            raise ValueError(f"target {value!r}: a {level} target is {level}:<route>/<{level}>")
        route, name = rest.split("/", 1)
        return {"route": route, level: name}

    @model_validator(mode="after")
    def _one_level(self) -> Target:
        if self.segment is not None and self.point is not None:
            raise ValueError("a target names a segment or a point, not both")
        if self.route is None and self.point is None:
            raise ValueError("a target needs a route, or a point")
        return self

    @property
    def level(self) -> str:
        """``point``, ``segment`` or ``route``."""
        return "point" if self.point is not None else "segment" if self.segment is not None else "route"

    def __str__(self) -> str:
        if self.point is not None:
            return f"point:{self.route}/{self.point}" if self.route else self.point
        if self.segment is not None:
            return f"segment:{self.route}/{self.segment}"
        return f"route:{self.route}"


class DelayAssumption(_Frozen):
    """A planner's delay in days; fields left out keep the default's. A bare number is the mean.

    ``mean``: the average delay (days); ``sd``: how unsure that mean is (days, 0 = known); ``shape``: how alike
    people's delays are (Gamma shape; 0 = everyone exactly the mean, 2 = Erlang-2 as the simulator's backlog).
    """

    mean: float | None = Field(default=None, ge=0.0)
    sd: float | None = Field(default=None, ge=0.0)
    shape: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"mean": value}
        return value


class DiversionShare(_Frozen):
    """``share`` (0..1) of the people blocked at the target who go to ``to`` instead of waiting."""

    to: Target
    share: float = Field(ge=0.0, le=1.0)


class InterventionAssumptions(_Frozen):
    """What a planner overrides for the people blocked by a closure or capacity cut (unset: the parameters' value).

    ``divert``: where blocked people go and which share of them (the rest wait); ``divert_sd``: the sd of the total
    share diverting; ``divert_lag_days``: days from being blocked to showing up at the destination's departure
    points; ``release_days``: days, after reopening, over which the waiting people leave.
    """

    divert: tuple[DiversionShare, ...] | None = None
    divert_sd: float | None = Field(default=None, ge=0.0)
    divert_lag_days: DelayAssumption | None = None
    release_days: DelayAssumption | None = None

    @model_validator(mode="after")
    def _shares_add_up(self) -> InterventionAssumptions:
        if self.divert is not None:
            total = sum(d.share for d in self.divert)
            if total > 1.0 + 1e-9:
                raise ValueError(f"the divert shares add up to {total:g}, more than 1")
        return self


class TransitAssumption(_Frozen):
    """A planner's transit times between crossing points: ``sd_share`` (relative sd of each link's mean lag, 0.2 =
    ±20 %) and ``shape`` (how alike people's transit times are, Gamma shape; 0 = all exactly the lag)."""

    sd_share: float | None = Field(default=None, ge=0.0)
    shape: float | None = Field(default=None, ge=0.0)


class SpecAssumptions(_Frozen):
    """Assumptions of the whole scenario (not tied to one intervention)."""

    transit: TransitAssumption | None = None


class _Intervention(_Frozen):
    target: Target
    start: date
    end: date  # inclusive
    note: str = ""

    @model_validator(mode="after")
    def _end_not_before_start(self) -> _Intervention:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    @property
    def days(self) -> int:
        """How many days it lasts (``end`` included)."""
        return (self.end - self.start).days + 1


class Closure(_Intervention):
    """Nobody passes the target from ``start`` to ``end``; the people blocked wait or divert."""

    kind: Literal["closure"]
    assumptions: InterventionAssumptions | None = None

    @property
    def passing_share(self) -> float:
        """The share of the usual flow still let through: 0."""
        return 0.0


class CapacityCut(_Intervention):
    """Only ``share`` (0..1) of the usual flow passes the target; the rest is blocked and waits or diverts."""

    kind: Literal["capacity_cut"]
    share: float = Field(ge=0.0, le=1.0)
    assumptions: InterventionAssumptions | None = None

    @property
    def passing_share(self) -> float:
        """The share of the usual flow still let through."""
        return self.share


class Surge(_Intervention):
    """Departures at the target are multiplied by ``factor`` (> 0; 2 = twice as many, 0.5 = half) and flow on."""

    kind: Literal["surge"]
    factor: float = Field(gt=0.0)


Intervention = Annotated[Closure | CapacityCut | Surge, Field(discriminator="kind")]


class ScenarioSpec(_Frozen):
    """A what-if scenario: one or more interventions, the planner's assumptions, and an optional random seed."""

    name: str = ""
    description: str = ""
    seed: int | None = Field(default=None, ge=0)
    interventions: tuple[Intervention, ...] = Field(min_length=1)
    assumptions: SpecAssumptions = SpecAssumptions()


def parse_spec(data: Mapping[str, Any]) -> ScenarioSpec:
    """A scenario from a mapping (parsed JSON or TOML); :class:`ScenarioError` with one sentence if malformed."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"a scenario must be a table of fields, got {type(data).__name__}")
    try:
        return ScenarioSpec.model_validate(dict(data))
    except ValidationError as err:
        raise ScenarioError(_one_sentence(err)) from None


def spec_from_json(text: str) -> ScenarioSpec:
    """A scenario from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ScenarioError(f"the scenario is not valid JSON: {err.msg} at line {err.lineno}") from None
    return parse_spec(data)


def spec_from_toml(text: str) -> ScenarioSpec:
    """A scenario from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"the scenario is not valid TOML: {err}") from None
    return parse_spec(data)


def load_spec(path: str | Path) -> ScenarioSpec:
    """A scenario from a ``.toml`` or ``.json`` file."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ScenarioError(f"scenario file {path.name}: expected a .toml or .json file")
    text = path.read_text(encoding="utf-8")
    return spec_from_toml(text) if path.suffix == ".toml" else spec_from_json(text)


def _where(loc: tuple[Any, ...]) -> str:
    """``('interventions', 0, 'surge', 'factor')`` -> ``interventions[0].factor`` (union tags left out)."""
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and part in KINDS:
            pass  # the discriminated union's tag, not a field
        elif "[" in str(part) or "-" in str(part):
            pass  # a validator's name (function-after[...])
        else:
            out += f".{part}" if out else str(part)
        prev = part
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(e: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence naming the field and the value."""
    where = _where(tuple(e["loc"])) or "the scenario"
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    if kind == "missing":
        return f"{where} is missing"
    if kind == "extra_forbidden":
        return f"{where} is not a known field"
    if kind == "union_tag_invalid":
        return f"{where}.kind {ctx.get('tag')!r} is not a known kind; expected one of {', '.join(KINDS)}"
    if kind == "union_tag_not_found":
        return f"{where}.kind is missing; expected one of {', '.join(KINDS)}"
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if kind in bounds:
        bound = bounds[kind].format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()})
        return f"{where} must be {bound}, got {_shown(value)}"
    if kind == "too_short" and where == "interventions":
        return "the scenario has no interventions; add at least one [[interventions]]"
    if kind.startswith("date_"):
        return f"{where} must be a date (YYYY-MM-DD), got {_shown(value)}"
    if kind == "value_error":
        message = str(ctx.get("error", e["msg"]))
        return message if where == "the scenario" else f"{where}: {message}"
    msg = str(e["msg"])
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{where}: {msg.replace('input should', 'must')}, got {_shown(value)}"


def _one_sentence(err: ValidationError) -> str:
    problems = [_problem(e) for e in err.errors(include_url=False)]
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
