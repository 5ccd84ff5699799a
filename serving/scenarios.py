"""What-if scenarios on the served release, and the store of every scenario asked for.

A release carries its route network in the manifest (``scenario_network``: ``forecasting.scenario.Network.to_dict``)
and its people forecasts (series ``people/…``). A scenario runs on the part of both a caller may see: the points and
links of the routes in its token's scope, nothing else, *before* the spec is checked. So a target or a diversion
destination on a route outside the scope fails exactly like a route that does not exist, and the engine's messages
(which list the known routes) never name a route outside the scope.

Every scenario that ran is kept under ``settings.scenarios_path`` (``<var_dir>/scenarios/<id>/``): ``spec.json`` (the
body exactly as sent), ``meta.json`` (id, when, release and its lineage, who asked, the routes it touches, draws,
seed) and its tables as JSON rows (``summary``, ``daily``, ``ledger``, ``assumptions``; people). A scenario's folder is
written in full under a temporary name and renamed: a reader sees all of it or nothing. A refused scenario writes
nothing. Ids are 32 random hex digits (uuid4), checked before any path is made from one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from contracts.published import SCENARIO_NETWORK
from forecasting.scenario import (
    FORECAST_COLUMNS,
    Network,
    NetworkError,
    ScenarioError,
    ScenarioParameters,
    ScenarioResult,
    load_parameters,
    simulate_scenario,
    spec_from_json,
    summarise,
)
from serving.store import Release, StoreError

PEOPLE_PREFIX = "people/"
MAX_SPEC_BYTES = 64 * 1024  # a scenario is a few interventions: a body larger than this is refused unread
ID_PATTERN = r"^[0-9a-f]{32}$"
_ID = re.compile(ID_PATTERN)
TABLES = ("summary", "daily", "ledger", "assumptions")
SPEC_FILE, META_FILE = "spec.json", "meta.json"


class NoScenarioNetwork(LookupError):
    """The release carries no route network, so no scenario can run on it (an older release, or one published
    without it)."""


@dataclass(frozen=True)
class ScenarioRun:
    """A scenario that ran: its result (people) and the routes it touches (targets, diversions' destinations and
    the routes downstream of them), all within the caller's scope."""

    result: ScenarioResult
    routes: tuple[str, ...]


class BadParameters(RuntimeError):
    """The scenario parameters file the settings name cannot be used (the message says why)."""


def configured_parameters(path: Path | None) -> ScenarioParameters | None:
    """The parameters in ``path`` (``ROUTECAST_SCENARIO_PARAMETERS``), None when unset; ``BadParameters`` for a file
    that is missing or invalid (read at every scenario, so a new estimate applies without a restart)."""
    if path is None:
        return None
    try:
        return load_parameters(path)
    except ValueError as exc:
        raise BadParameters(str(exc)) from None


def release_network(release: Release) -> Network:
    """The route network the release carries (read once per release); ``NoScenarioNetwork`` when it has none,
    ``StoreError`` when it is malformed."""
    if SCENARIO_NETWORK not in release.manifest:
        raise NoScenarioNetwork(
            f"release {release.release_id} has no route network for scenarios; scenarios need a release published "
            "with one (scenario_network in its manifest)"
        )

    def build() -> Network:
        try:
            return Network.from_dict(release.manifest[SCENARIO_NETWORK])
        except (NetworkError, TypeError, AttributeError) as exc:
            raise StoreError(f"release {release.release_id}: scenario_network is malformed: {exc}") from None

    return release.derived(("scenario", "network"), build)


def people_forecasts(release: Release) -> pd.DataFrame:
    """The release's people forecasts (``FORECAST_COLUMNS`` and ``route_id``; people), selected once per release."""

    def build() -> pd.DataFrame:
        f = release.forecasts
        return f.loc[f["series_id"].str.startswith(PEOPLE_PREFIX), [*FORECAST_COLUMNS, "route_id"]].reset_index(
            drop=True
        )

    return release.derived(("scenario", "people"), build)


def scoped_network(network: Network, routes: frozenset[str] | None) -> Network:
    """``network`` without the points and links of routes outside ``routes`` (None: all routes). Links never cross
    routes, so what is left is a valid network; its notes (how it was made) are dropped for a scoped caller."""
    if routes is None:
        return network
    return Network(
        points=tuple(p for p in network.points if p.route_id in routes),
        links=tuple(k for k in network.links if k.route_id in routes),
    )


def run_on_release(
    body: bytes,
    release: Release,
    routes: frozenset[str] | None,
    *,
    n_draws: int,
    seed: int | None = None,
    parameters: ScenarioParameters | None = None,
) -> ScenarioRun:
    """Run the scenario ``body`` (JSON) on ``release``, seeing only ``routes`` (a token's scope; None: all), with
    ``parameters`` (None: the engine's defaults). People the parameters divert to a route outside the scope leave
    the routes shown, and nothing names where they went.

    Raises ``ScenarioError`` (one sentence) for a body that is not a valid scenario on what the caller may see,
    ``NoScenarioNetwork`` for a release without a route network, ``StoreError`` for a release whose network or
    forecasts cannot be used.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError("the scenario is not valid JSON: it is not UTF-8 text") from None
    spec = spec_from_json(text)
    network = scoped_network(release_network(release), routes)
    if not network.points:
        # Nothing to act on: every target is unknown to this caller, and says so as the engine would.
        first = spec.interventions[0]
        network.resolve(first.target, "interventions[0].target")
        raise ScenarioError(f"interventions[0].target {first.target} has no crossing point to act on")
    people = people_forecasts(release)
    forecasts = people[people["route_id"].isin(network.routes)]
    try:
        draws = simulate_scenario(spec, network, forecasts, parameters=parameters, n_draws=n_draws, seed=seed)
    except ScenarioError:
        raise
    except ValueError as exc:  # the release's forecasts cannot carry a scenario (a gap, a duplicate row)
        raise StoreError(f"release {release.release_id}: its people forecasts cannot run a scenario: {exc}") from None
    touched = {k[0] for p in draws.plan for k in p.points}
    touched |= {k[0] for p in draws.plan for d in p.destinations for k in d.points}
    touched |= {r.route_id for r in draws.rows}
    return ScenarioRun(result=summarise(draws), routes=tuple(sorted(touched)))


# ----------------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class StoredScenario:
    """A scenario as kept: the spec as sent (parsed JSON), its meta and its tables as rows (people)."""

    scenario_id: str
    spec: Any
    meta: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]]


def new_scenario_id() -> str:
    """32 random hex digits: unguessable, and safe as a folder name."""
    return uuid.uuid4().hex


def valid_scenario_id(scenario_id: str) -> bool:
    return bool(_ID.fullmatch(scenario_id))


def _plain(value: Any) -> Any:
    """A table cell as JSON can hold it: dates as ISO text, NaN and infinities as null."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return value


def table_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a result table as plain mappings (JSON-able)."""
    columns = list(frame.columns)
    return [
        {c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in frame.itertuples(index=False, name=None)
    ]


def scenario_meta(
    scenario_id: str, run: ScenarioRun, release: Release, subject: str, created_at: dt.datetime
) -> dict[str, Any]:
    """What ``meta.json`` holds: id, when (UTC), the release and its lineage, who asked, the routes touched, the
    horizon, draws, seed and the engine's notes."""
    result = run.result
    return {
        "scenario_id": scenario_id,
        "created_at": created_at.isoformat(timespec="seconds"),
        "release_id": release.release_id,
        "model_version": _opt_str(release.manifest.get("model_version")),
        "run_id": _opt_str(release.manifest.get("run_id")),
        "subject": subject,
        "routes": list(run.routes),
        "first_day": result.first_day.isoformat(),
        "last_day": result.last_day.isoformat(),
        "n_draws": result.n_draws,
        "seed": result.seed,
        "notes": list(result.notes),
    }


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


class ScenarioStore:
    """The scenarios kept under ``root``, one folder each, written once and never changed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(self, scenario_id: str, spec_body: bytes, meta: Mapping[str, Any], result: ScenarioResult) -> Path:
        """Write a scenario's folder in full under a temporary name, then rename it into place."""
        if not valid_scenario_id(scenario_id):
            raise ValueError(f"not a scenario id: {scenario_id!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / scenario_id
        tmp = self.root / f".tmp-{scenario_id}-{os.getpid()}"
        tmp.mkdir()
        try:
            (tmp / SPEC_FILE).write_bytes(spec_body)
            (tmp / META_FILE).write_text(json.dumps(dict(meta), indent=1, allow_nan=False) + "\n")
            for name in TABLES:
                rows = table_rows(getattr(result, name))
                (tmp / f"{name}.json").write_text(json.dumps(rows, separators=(",", ":"), allow_nan=False))
            os.rename(tmp, final)  # refuses to replace an existing folder: an id is never reused
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load(self, scenario_id: str) -> StoredScenario | None:
        """The scenario with that id; None when the id is malformed or unknown (no path is made from a malformed
        one). ``StoreError`` when its folder is there but cannot be read."""
        if not valid_scenario_id(scenario_id):
            return None
        folder = self.root / scenario_id
        if not (folder / META_FILE).is_file():
            return None
        try:
            spec = json.loads((folder / SPEC_FILE).read_bytes())
            meta = json.loads((folder / META_FILE).read_text())
            tables = {name: json.loads((folder / f"{name}.json").read_text()) for name in TABLES}
        except (OSError, ValueError) as exc:
            raise StoreError(f"scenario {scenario_id} cannot be read: {exc}") from None
        return StoredScenario(scenario_id=scenario_id, spec=spec, meta=meta, tables=tables)

    def listing(self) -> list[dict[str, Any]]:
        """Every scenario kept, newest first (``created_at``, then id): its meta with the spec's ``name`` added (None
        when the spec has none). Only ``meta.json`` and ``spec.json`` are read, not the tables. ``StoreError`` when
        one of them cannot be read."""
        found = []
        for scenario_id in self.ids():
            folder = self.root / scenario_id
            if not (folder / META_FILE).is_file():
                continue
            try:
                meta = json.loads((folder / META_FILE).read_text())
                spec = json.loads((folder / SPEC_FILE).read_bytes())
            except (OSError, ValueError) as exc:
                raise StoreError(f"scenario {scenario_id} cannot be read: {exc}") from None
            if not isinstance(meta, dict):
                raise StoreError(f"scenario {scenario_id} is malformed: meta.json is not a table of fields")
            name = spec.get("name") if isinstance(spec, dict) else None
            found.append({**meta, "scenario_id": scenario_id, "name": name if isinstance(name, str) else None})
        return sorted(found, key=lambda m: (str(m.get("created_at", "")), m["scenario_id"]), reverse=True)

    def ids(self) -> list[str]:
        """The ids of the scenarios kept (temporary folders left out)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if valid_scenario_id(p.name))
