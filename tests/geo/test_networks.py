"""Home-network groups: the data files (geo/data) and the classification of a network seen from a country."""

from __future__ import annotations

import csv
import shutil
import tomllib
from collections import Counter
from pathlib import Path

import h3
import numpy as np
import pytest

from contracts.networks import DOMESTIC, GROUPS, NEIGHBOURING, OTHER, REGIONAL_GROUPS, ROAMING_GROUPS, UNKNOWN
from geo import networks
from geo.networks import (
    MIN_GROUP_COUNTRIES,
    NetworkDataError,
    cell_countries,
    classify,
    group_countries,
    home_networks,
    links,
    local_groups,
)

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_TOML = ROOT / "simulator" / "simulator.toml"


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (ROOT / "geo" / "data" / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _every_country() -> set[str]:
    return {n.country for n in home_networks().values()} | {k.country for k in links()} | {k.neighbour for k in links()}


def test_no_mcc_is_listed_twice_and_every_row_is_well_formed():
    rows = _csv_rows(networks.MCC_FILE)
    assert [m for m, n in Counter(r["mcc"] for r in rows).items() if n > 1] == []
    assert len(home_networks()) == len(rows)
    assert {r["group"] for r in rows} == set(REGIONAL_GROUPS)


def test_every_country_code_is_one_a_cell_can_get():
    from geo.countries import natural_earth_countries

    codes = set(natural_earth_countries((-180.0, -90.0, 180.0, 90.0), ["ADM0_A3"])["ADM0_A3"])
    assert sorted(_every_country() - codes) == []


def test_every_mcc_the_simulator_uses_is_mapped():
    config = tomllib.loads(SIMULATOR_TOML.read_text())
    used = {m for route in config["routes"].values() for m in route.get("origin_mcc", {})}
    used |= set(config["country_mcc"].values())
    assert len(used) > 30  # the file was read: migrants' origins and the residents' networks
    assert sorted(used - set(home_networks())) == []


@pytest.mark.parametrize("group", [g for g in REGIONAL_GROUPS])
def test_every_regional_group_spans_at_least_three_countries(group):
    countries = {n.country for n in home_networks().values() if n.group == group}
    assert len(countries) >= MIN_GROUP_COUNTRIES


def test_seen_from_any_country_no_group_but_the_local_ones_has_fewer_than_three_countries():
    too_small = {
        (country, group): sorted(members)
        for country in sorted(_every_country())
        for group, members in group_countries(country).items()
        if 0 < len(members) < MIN_GROUP_COUNTRIES
    }
    assert too_small == {}


def test_where_neighbours_leave_a_group_too_small_it_counts_as_other():
    # From Libya, North Africa minus Libya and its neighbours (Tunisia, Algeria, Egypt, Sudan) is Morocco alone.
    assert group_countries("LBY")["north_africa"] == frozenset()
    assert "MAR" in group_countries("LBY")[OTHER]
    assert group_countries("TUN")["north_africa"] == frozenset({"EGY", "MAR", "SDN"})


@pytest.mark.parametrize(
    ("mcc", "country", "expected"),
    [
        ("606", "LBY", DOMESTIC),  # Libyan network in Libya
        ("604", "SAH", DOMESTIC),  # Moroccan networks serve Western Sahara
        ("605", "LBY", NEIGHBOURING),  # Tunisia borders Libya
        ("606", "NER", NEIGHBOURING),
        ("262", "FRA", NEIGHBOURING),  # German phones in France: neighbours before visitors
        ("234", "FRA", NEIGHBOURING),  # the Channel is a short sea crossing
        ("286", "GRC", NEIGHBOURING),
        ("262", "ITA", "visitor"),
        ("310", "GRC", "visitor"),
        ("280", "GRC", "visitor"),  # Cyprus: EU, though M49 Western Asia
        ("604", "LBY", OTHER),  # North Africa seen from Libya would be Morocco alone
        ("604", "ITA", "north_africa"),
        ("634", "ITA", "north_africa"),  # Sudan is M49 Northern Africa
        ("621", "ITA", "west_central_africa"),
        ("622", "ITA", "west_central_africa"),  # Chad: Middle Africa
        ("657", "LBY", "east_africa"),
        ("417", "GRC", "middle_east_south_asia"),
        ("286", "SRB", "middle_east_south_asia"),
        ("470", "ITA", "middle_east_south_asia"),
        ("255", "POL", NEIGHBOURING),
        ("255", "ITA", OTHER),
        (None, "ITA", UNKNOWN),
        ("99", "ITA", UNKNOWN),
        ("6O6", "LBY", UNKNOWN),
        ("999", "ITA", UNKNOWN),  # well-formed, not listed
    ],
)
def test_classify(mcc, country, expected):
    assert classify(mcc, country) == expected


def test_the_join_tables_say_what_classify_says():
    local = {(c, m): g for c, m, g in local_groups()}
    for country in sorted(_every_country()):
        for mcc, net in home_networks().items():
            assert local.get((country, mcc), net.group) == classify(mcc, country), (country, mcc)
    assert {g for _, _, g in local_groups()} <= {DOMESTIC, NEIGHBOURING, OTHER}
    assert set(GROUPS) == {DOMESTIC, NEIGHBOURING, *REGIONAL_GROUPS, UNKNOWN}
    assert set(ROAMING_GROUPS) == set(GROUPS) - {DOMESTIC, "visitor"}


def test_cells_get_the_country_of_their_centre_looked_up_once_each():
    khartoum = h3.str_to_int(h3.latlng_to_cell(15.5518, 32.5324, 7))
    lampedusa = h3.str_to_int(h3.latlng_to_cell(35.5022, 12.6081, 7))
    got = cell_countries(np.array([khartoum, lampedusa, khartoum], dtype=np.int64))
    assert list(got) == ["SDN", "ITA", "SDN"]
    assert list(cell_countries(np.array([], dtype=np.int64))) == []


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A writable copy of geo/data, read instead of the package's (caches cleared before and after)."""
    shutil.copytree(networks.DATA_DIR, tmp_path / "data")
    monkeypatch.setattr(networks, "DATA_DIR", tmp_path / "data")
    _clear()
    yield tmp_path / "data"
    _clear()


def _clear():
    for f in (networks.home_networks, networks.links, networks.local_countries, networks.group_countries):
        f.cache_clear()


def test_a_repeated_mcc_is_refused(data_copy):
    with (data_copy / networks.MCC_FILE).open("a", encoding="utf-8") as f:
        f.write("621,GHA,Ghana,west_central_africa\n")
    with pytest.raises(NetworkDataError, match="mcc 621 is listed twice"):
        home_networks()


def test_an_unknown_group_or_link_is_refused(data_copy):
    with (data_copy / networks.NEIGHBOURS_FILE).open("a", encoding="utf-8") as f:
        f.write("ITA,LBY,ferry\n")
    with pytest.raises(NetworkDataError, match="link must be one of"):
        links()
