"""The simulator's parameter file (``simulator/simulator.toml``) as frozen pydantic models, and how it is read.

Every table is a model that refuses unknown keys (``extra="forbid"``) and checks its ranges with Field
constraints; numbers, whole numbers, booleans and strings are strict (a quoted number or ``true`` is not a
number). ``load_config`` turns the first problem into a one-line ``SimulatorConfigError`` naming the file and the
key path, e.g. ``simulator.toml: key 'phones.missing_share': must be in [0, 1], got 1.5``. What depends on the
catalogue (every route has parameters, closures name real crossing points) is checked when a run is built
(``simulator.model``). Vary a loaded config with ``model_copy(update=...)`` (the tests do; it does not validate).
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

DEFAULT_CONFIG_PATH = Path(__file__).resolve().with_name("simulator.toml")
SCALES = ("small", "medium", "large")


class SimulatorConfigError(ValueError):
    """The simulator config is malformed or does not fit the catalogue; the message names the key."""


class _KeyProblem(ValueError):
    """Raised inside a validator about a key deeper than (or beside) the one being validated."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(what)
        self.key = key
        self.what = what


Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int or a float in TOML, never a bool
Whole = Annotated[int, Field(strict=True)]
Share = Annotated[Number, Field(ge=0.0, le=1.0)]
Weight = Annotated[Number, Field(ge=0.0)]


def _low_high(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"must be [low, high] with low <= high, got {list(pair)!r}")
    return pair


Range = Annotated[tuple[Weight, Weight], AfterValidator(_low_high)]
T = TypeVar("T")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScalePreset(_Table):
    """A size preset ([scales.*]): the default run length and how many agents and residents."""

    days: Whole = Field(ge=1)
    departures: Number = Field(ge=0.0)  # multiplier on every route's departures_per_day
    residents_per_place: Whole = Field(ge=0)


class TravelMode(_Table):
    """How agents move along a segment ([travel_modes.*]); ``sea`` modes are boats."""

    km_per_day: Number = Field(ge=0.1)
    spread: Number = Field(ge=0.0, le=2.0)  # sd of the agent's log-speed factor
    ping_share: Share  # share of the usual pings while moving
    sea: StrictBool = False
    departure_hour_utc: Number | None = Field(default=None, ge=0.0, le=24.0)  # boats only


class RouteParams(_Table):
    """One route's departures, origins and per-segment choices ([routes.*])."""

    departures_per_day: Number = Field(ge=0.0)
    seasonal_amplitude: Number = Field(ge=0.0, le=0.95)
    peak_day_of_year: Whole = Field(ge=1)
    trend_per_year: Number = Field(ge=-0.9)
    origin_mcc: dict[str, Weight]  # home network -> weight
    branch_weight: dict[str, Weight] = {}  # segment id -> weight where paths fork
    travel: dict[str, StrictStr] = {}  # segment id -> travel mode
    dwell_days: dict[str, Weight] = {}  # segment id -> mean wait at its start

    @field_validator("origin_mcc")
    @classmethod
    def _some_weight(cls, weights: dict[str, float]) -> dict[str, float]:
        if sum(weights.values()) <= 0:
            raise ValueError("needs at least one positive weight")
        return weights


class Closure(_Table):
    """A crossing point closed for some weeks ([[closures]]); ``route`` disambiguates a shared id."""

    crossing: StrictStr
    start_day: Whole  # 0 = the first simulated day
    weeks: Number = Field(ge=0.0)
    divert_share: Share
    to_route: StrictStr
    # At least a day, so that an agent never counts on two routes on the same day.
    lag_days: Whole = Field(ge=1)
    route: StrictStr | None = None


class Surge(_Table):
    """More people setting sail for some weeks ([[surges]]): every boat leaving a departure point of ``route`` (or only
    ``crossing``) between start_day and start_day + 7 * weeks carries ``factor`` times its people. The extra people
    are copies of those sailing, from that leg on, under new ids: as if more had reached the coast and left with
    them. Everyone else's journey is unchanged, so two runs with the same seed differ by the surge alone."""

    route: StrictStr
    crossing: StrictStr | None = None
    start_day: Whole  # 0 = the first simulated day
    weeks: Number = Field(ge=0.0)
    factor: Number = Field(gt=1.0, le=8.0)


class Phones(_Table):
    """How phones report ([phones])."""

    migrant_pings_per_day: Number = Field(ge=0.0, le=48.0)
    resident_pings_per_day: Number = Field(ge=0.0, le=48.0)
    missing_share: Share
    coarse_fix_share: Share
    fine_accuracy_m: Range
    coarse_accuracy_m: Range


class Residents(_Table):
    """The resident background around every place ([residents])."""

    home_spread_km: Number = Field(ge=0.0)
    activity_km: Number = Field(ge=0.0)
    presence: tuple[Share, ...]  # Monday..Sunday

    @field_validator("presence")
    @classmethod
    def _a_week(cls, presence: tuple[float, ...]) -> tuple[float, ...]:
        if len(presence) != 7:
            raise ValueError("must list 7 shares, Monday..Sunday")
        return presence


class PerKind(_Table, Generic[T]):
    """One value for land segments and one for sea segments; ``x[segment.mode]`` picks one."""

    land: T
    sea: T

    def __getitem__(self, kind: str) -> T:
        return getattr(self, kind)


class Migrants(_Table):
    """Where agents are while they wait and travel, the departure wave, the backlog after a closure ([migrants])."""

    dwell_spread_km: Number = Field(ge=0.0)
    travel_spread_km: Number = Field(ge=0.0)
    volatility: Number = Field(ge=0.0)
    persistence: Number = Field(ge=0.0, le=0.999)
    reopen_spread_days: Number = Field(ge=0.0)
    default_dwell_days: PerKind[Weight]
    default_travel: PerKind[StrictStr]


def _networks(weights: dict[str, float]) -> dict[str, float]:
    for mcc in weights:
        if not re.fullmatch(r"\d{3}", mcc):
            raise ValueError(f"keys must be 3-digit MCC strings, got {mcc!r}")
    if sum(weights.values()) <= 0:
        raise ValueError("needs at least one positive weight")
    return weights


Networks = Annotated[dict[str, Weight], AfterValidator(_networks)]  # home network (MCC) -> weight


class MigrantPhones(_Table):
    """How many phones a migrant carries and when a phone moves to a local SIM ([migrant_phones])."""

    carried: tuple[Share, ...]  # shares of migrants carrying 0, 1 and 2 phones; they add up to 1
    local_sim_share: Share  # per phone and country entered: the share that buys the country's SIM
    local_sim_days: Number = Field(ge=0.0, le=365.0)  # mean delay (Erlang-2) after entering the country

    @field_validator("carried")
    @classmethod
    def _adds_up(cls, carried: tuple[float, ...]) -> tuple[float, ...]:
        if len(carried) != 3:
            raise ValueError(f"must list 3 shares, of 0, 1 and 2 phones, got {len(carried)}")
        if abs(sum(carried) - 1.0) > 1e-6:
            raise ValueError(f"the shares of 0, 1 and 2 phones must add up to 1, got {sum(carried):g}")
        return carried


class Coverage(_Table):
    """Where phones have no signal ([coverage]); desert roads have it through their travel mode's ping_share."""

    sea_coastal_km: Number = Field(ge=0.0, le=500.0)  # at sea, no signal beyond this along-line distance from a coast


class Tourists(_Table):
    """Visitors on foreign networks at coastal places with strong seasons ([tourists])."""

    places: dict[str, Weight]  # catalogue place name -> weight
    peak_per_place: Number = Field(ge=0.0, le=10.0)  # x residents_per_place x weight, at the season's peak
    peak_day_of_year: Whole = Field(ge=1, le=366)
    seasonal_amplitude: Share  # 1: no tourists at the opposite of the peak
    stay_days: Whole = Field(ge=1)  # a bed's guest (and so its network) changes this often
    networks: Networks  # a place's own network is left out: a visitor is foreign


class Drivers(_Table):
    """Long-haul drivers on the segments travelled by ``desert_truck`` ([drivers])."""

    per_segment: Number = Field(ge=0.0, le=10.0)  # drivers on each such segment x residents_per_place
    networks: Networks


class Workers(_Table):
    """Foreign workers living around places of transit countries, pinging like residents ([workers])."""

    per_resident: dict[str, Weight]  # country code (ADM0_A3) -> workers per resident
    networks: Networks  # a place's own network is left out

    @field_validator("per_resident")
    @classmethod
    def _countries(cls, shares: dict[str, float]) -> dict[str, float]:
        for country in shares:
            if not re.fullmatch(r"[A-Z]{3}", country):
                raise _KeyProblem(f"workers.per_resident.{country}", "expected a 3-letter country code")
        return shares


class Weather(_Table):
    """Days when boats do not sail ([weather]): a cosine between the two shares."""

    bad_day_share_winter: Number = Field(ge=0.0, le=0.99)
    bad_day_share_summer: Number = Field(ge=0.0, le=0.99)


class SimulatorConfig(_Table):
    """The whole parameter file; use ``model_copy(update=...)`` to vary a copy (tests do)."""

    seed: Whole = Field(ge=0)
    warmup_days: Whole = Field(ge=0)
    scales: dict[str, ScalePreset]
    phones: Phones
    residents: Residents
    migrants: Migrants
    weather: Weather
    migrant_phones: MigrantPhones
    coverage: Coverage
    tourists: Tourists
    drivers: Drivers
    workers: Workers
    travel_modes: dict[str, TravelMode]
    routes: dict[str, RouteParams]
    closures: tuple[Closure, ...] = ()
    surges: tuple[Surge, ...] = ()
    country_mcc: dict[str, StrictStr]  # Natural Earth country code (ADM0_A3) -> MCC

    @field_validator("scales")
    @classmethod
    def _the_presets(cls, scales: dict[str, ScalePreset]) -> dict[str, ScalePreset]:
        for name in SCALES:
            if name not in scales:
                raise _KeyProblem(f"scales.{name}", "missing")
        return {**{name: scales[name] for name in SCALES}, **scales}

    @field_validator("country_mcc")
    @classmethod
    def _codes(cls, country_mcc: dict[str, str]) -> dict[str, str]:
        for country, mcc in country_mcc.items():
            if not re.fullmatch(r"[A-Z]{3}", country) or not re.fullmatch(r"\d{3}", mcc):
                raise _KeyProblem(f"country_mcc.{country}", "expected a 3-letter country code = a 3-digit MCC string")
        return country_mcc

    @model_validator(mode="after")
    def _modes_exist(self) -> SimulatorConfig:
        for kind in ("land", "sea"):
            mode = self.migrants.default_travel[kind]
            if mode not in self.travel_modes or self.travel_modes[mode].sea != (kind == "sea"):
                raise _KeyProblem(f"migrants.default_travel.{kind}", f"must name a {kind} travel mode, got {mode!r}")
        for route_id, params in self.routes.items():
            for segment_id, mode in params.travel.items():
                if mode not in self.travel_modes:
                    raise _KeyProblem(
                        f"routes.{route_id}.travel.{segment_id}",
                        f"must be a travel mode ({', '.join(self.travel_modes)}), got {mode!r}",
                    )
        return self


def load_config(path: Path | None = None) -> SimulatorConfig:
    """Read and check the simulator parameter file (default: ``simulator/simulator.toml``).

    Raises SimulatorConfigError naming the file and the key for unknown keys, missing values or values out of range.
    """
    path = path or DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimulatorConfigError(f"simulator config {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SimulatorConfigError(f"{path.name}: not valid TOML ({exc})") from None
    try:
        return SimulatorConfig.model_validate(raw)
    except ValidationError as exc:
        raise SimulatorConfigError(f"{path.name}: {describe(exc)}") from None


# --- one line per validation error ---------------------------------------------------------------------------


def describe(exc: ValidationError) -> str:
    """The first error of a validation as ``key 'a.b[0].c': what is wrong, got <value>`` (and how many more).

    An unknown key comes first: it is most often a typo, which also makes the key it was meant to be missing."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    problem = (first.get("ctx") or {}).get("error")
    if isinstance(problem, _KeyProblem):
        key, what = problem.key, problem.what
    else:
        key, what = _key(loc), _what(first, loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"key {key!r}: {what}{more}"


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _what(error: Any, loc: tuple[int | str, ...]) -> str:
    kind, value = error["type"], error.get("input")
    got = f", got {_short(value)}"
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        parent = _annotation_at(loc[:-1])[0]
        fields = parent.model_fields if isinstance(parent, type) and issubclass(parent, BaseModel) else {}
        return f"not a known key; allowed: {', '.join(sorted(fields))}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(loc)
        if lo is not None and hi is not None:
            return f"must be in [{lo:g}, {hi:g}]{got}"
        return (f"must be >= {lo:g}" if lo is not None else f"must be <= {hi:g}") + got
    if kind in ("float_type", "float_parsing"):
        return "must be a number" + got
    if kind == "finite_number":
        return "must be a finite number" + got
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number" + got
    if kind == "bool_type":
        return "must be true or false" + got
    if kind == "string_type":
        return "must be a string" + got
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table" + got
    if kind in ("tuple_type", "list_type"):
        return "must be an array" + got
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    msg = error["msg"].replace("Input should be", "must be", 1)
    return msg[:1].lower() + msg[1:] + got


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _annotation_at(loc: tuple[int | str, ...]) -> tuple[Any, list[Any]]:
    """The type a location of SimulatorConfig holds, and the constraints (metadata) attached to it."""
    annotation: Any = SimulatorConfig
    metadata: list[Any] = []
    for part in loc:
        annotation, metadata = _unwrap(annotation, metadata)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None, []
            annotation, metadata = field.annotation, list(field.metadata)
            continue
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is dict:
            annotation = args[1]
        elif origin is tuple:
            annotation = args[0] if len(args) == 2 and args[1] is Ellipsis else args[int(part)]
        else:
            return None, []
        metadata = []
    return _unwrap(annotation, metadata)


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` (collecting its constraints) and ``| None`` off a type."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
            continue
        args = typing.get_args(annotation)
        if type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
            continue
        return annotation, metadata


def _bounds(loc: tuple[int | str, ...]) -> tuple[float | None, float | None]:
    """The lower and upper bounds (ge/gt, le/lt constraints) of the number at a location."""
    lo = hi = None
    for item in _annotation_at(loc)[1]:
        for name in ("ge", "gt"):
            lo = float(getattr(item, name)) if hasattr(item, name) else lo
        for name in ("le", "lt"):
            hi = float(getattr(item, name)) if hasattr(item, name) else hi
    return lo, hi
