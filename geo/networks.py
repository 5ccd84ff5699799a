"""Home-network groups: which coarse group a phone's home network (its MCC) falls in, seen from a place.

A ping carries ``mcc``, the mobile country code of its SIM's home network. Counting phones per MCC would single out
national communities, so the jobs count them per **group** only (docs/privacy.md, "Aggregates by home-network
group"), from two files shipped in ``geo/data`` (sources and reasoning in ``geo/data/README.md``):

- ``mcc_groups.csv``: ``mcc`` (3 digits, ITU-T E.212) → ``country`` (Natural Earth ``ADM0_A3``, ISO 3166-1
  alpha-3 where one exists) → ``group``, the network's regional group (``contracts.networks.REGIONAL_GROUPS``);
- ``neighbours.csv``: ``country, neighbour, link`` — ``land`` or ``sea`` (a shared land border or a short sea
  crossing, either way round) for the countries the routes pass through, or ``domestic`` (one way: in
  ``country`` the ``neighbour``'s networks are the local ones, e.g. Moroccan networks in Western Sahara).

The group of a phone in a place whose country is ``C`` (``classify``), in this order:

1. ``domestic``: the network's country is ``C`` (or a ``domestic`` link of ``C``);
2. ``neighbouring``: the network's country shares a land border or a short sea crossing with ``C``;
3. its regional group — unless, seen from ``C``, that group has fewer than ``MIN_GROUP_COUNTRIES`` countries left
   once ``C``'s domestic and neighbouring countries are taken out (in Libya, North Africa would be Morocco alone):
   then ``other``;
4. ``unknown``: no MCC, a malformed one, or one the file does not list.

Pure: reads only the package's files (and, for ``cell_countries``, the Natural Earth outlines of ``geo.countries``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import h3
import numpy as np

from contracts.networks import DOMESTIC, NEIGHBOURING, OTHER, REGIONAL_GROUPS, UNKNOWN
from geo.countries import country_codes

DATA_DIR: Path = Path(__file__).resolve().parent / "data"
MCC_FILE = "mcc_groups.csv"
NEIGHBOURS_FILE = "neighbours.csv"

# A group that is neither local nor unknown spans at least this many countries, wherever it is counted, so that a
# group's count is never one foreign nationality's.
MIN_GROUP_COUNTRIES = 3
LINKS = ("land", "sea", "domestic")
_MCC = re.compile(r"\d{3}")
_A3 = re.compile(r"[A-Z]{3}")


class NetworkDataError(ValueError):
    """A row of geo/data/mcc_groups.csv or neighbours.csv is malformed."""


@dataclass(frozen=True)
class HomeNetwork:
    mcc: str
    country: str  # Natural Earth ADM0_A3
    name: str
    group: str  # one of REGIONAL_GROUPS


@dataclass(frozen=True)
class Link:
    country: str
    neighbour: str
    link: str  # land | sea (either way round) | domestic (neighbour's networks are local in country)


def _rows(name: str, header: tuple[str, ...]) -> list[dict[str, str]]:
    path = DATA_DIR / name
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != header:
            raise NetworkDataError(f"{path}: header {reader.fieldnames}; expected {','.join(header)}")
        return list(reader)


@cache
def home_networks() -> Mapping[str, HomeNetwork]:
    """Every listed network by MCC (``mcc_groups.csv``). Raises NetworkDataError on a malformed or repeated row."""
    networks: dict[str, HomeNetwork] = {}
    for line, row in enumerate(_rows(MCC_FILE, ("mcc", "country", "name", "group")), start=2):
        net = HomeNetwork(row["mcc"], row["country"], row["name"], row["group"])
        problem = (
            "mcc must be 3 digits"
            if not _MCC.fullmatch(net.mcc)
            else "country must be a 3-letter ADM0_A3 code"
            if not _A3.fullmatch(net.country)
            else f"group must be one of {', '.join(REGIONAL_GROUPS)}"
            if net.group not in REGIONAL_GROUPS
            else f"mcc {net.mcc} is listed twice"
            if net.mcc in networks
            else None
        )
        if problem:
            raise NetworkDataError(f"{DATA_DIR / MCC_FILE} line {line}: {problem}: {row}")
        networks[net.mcc] = net
    return networks


@cache
def links() -> tuple[Link, ...]:
    """The rows of ``neighbours.csv``. Raises NetworkDataError on a malformed or repeated pair."""
    seen: set[frozenset[str] | tuple[str, str]] = set()
    out = []
    for line, row in enumerate(_rows(NEIGHBOURS_FILE, ("country", "neighbour", "link")), start=2):
        link = Link(row["country"], row["neighbour"], row["link"])
        key = (link.country, link.neighbour) if link.link == "domestic" else frozenset((link.country, link.neighbour))
        problem = (
            "countries must be 3-letter ADM0_A3 codes"
            if not (_A3.fullmatch(link.country) and _A3.fullmatch(link.neighbour))
            else "a country is not its own neighbour"
            if link.country == link.neighbour
            else f"link must be one of {', '.join(LINKS)}"
            if link.link not in LINKS
            else "the pair is listed twice"
            if key in seen
            else None
        )
        if problem:
            raise NetworkDataError(f"{DATA_DIR / NEIGHBOURS_FILE} line {line}: {problem}: {row}")
        seen.add(key)
        out.append(link)
    return tuple(out)


@cache
def local_countries(country: str) -> tuple[frozenset[str], frozenset[str]]:
    """(the countries whose networks are domestic in ``country``, those that are neighbouring there)."""
    domestic = {country} | {k.neighbour for k in links() if k.link == "domestic" and k.country == country}
    near = {k.neighbour for k in links() if k.link != "domestic" and k.country == country}
    near |= {k.country for k in links() if k.link != "domestic" and k.neighbour == country}
    return frozenset(domestic), frozenset(near - domestic)


@cache
def group_countries(country: str) -> Mapping[str, frozenset[str]]:
    """Per regional group, the countries whose networks count in it when seen in ``country`` (``classify``)."""
    domestic, near = local_countries(country)
    members: dict[str, set[str]] = {g: set() for g in REGIONAL_GROUPS}
    for net in home_networks().values():
        if net.country not in domestic | near:
            members[net.group].add(net.country)
    folded = {g for g in REGIONAL_GROUPS if g != OTHER and 0 < len(members[g]) < MIN_GROUP_COUNTRIES}
    for g in folded:
        members[OTHER] |= members.pop(g)
        members[g] = set()
    return {g: frozenset(c) for g, c in members.items()}


def classify(mcc: str | None, country: str) -> str:
    """The group (``contracts.networks.GROUPS``) of a phone with home network ``mcc`` in ``country`` (ADM0_A3)."""
    net = home_networks().get(mcc) if isinstance(mcc, str) else None
    if net is None:
        return UNKNOWN
    domestic, near = local_countries(country)
    if net.country in domestic:
        return DOMESTIC
    if net.country in near:
        return NEIGHBOURING
    return next(g for g, members in group_countries(country).items() if net.country in members)


def local_groups(countries: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """``(country, mcc, group)`` for every (country, listed MCC) whose group there is not the MCC's regional group
    (``domestic``, ``neighbouring``, or ``other`` where the regional group is folded): with the regional groups of
    ``home_networks``, what ``classify`` says, as two small tables a join can use. ``countries``: default, every
    country either file names."""
    if countries is None:
        named = {n.country for n in home_networks().values()}
        countries = named | {k.country for k in links()} | {k.neighbour for k in links()}
    rows = []
    for country in sorted(set(countries)):
        for mcc, net in sorted(home_networks().items()):
            group = classify(mcc, country)
            if group != net.group:
                rows.append((country, mcc, group))
    return rows


def cell_countries(cells: np.ndarray) -> np.ndarray:
    """The country (ADM0_A3, ``geo.countries.country_codes``) of each H3 cell's centre (int64 ids, any resolution);
    a centre at sea gets the nearest country. Looks each distinct cell up once."""
    distinct, index = np.unique(np.asarray(cells, dtype=np.int64), return_inverse=True)
    centres = [h3.cell_to_latlng(h3.int_to_str(int(c))) for c in distinct]
    codes = np.asarray(country_codes([(lon, lat) for lat, lon in centres]), dtype=object)
    return codes[index]
