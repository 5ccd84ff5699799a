"""The route network scenarios run on, built from the catalogue and a release's people history."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from forecasting.scenario import Network, NetworkError
from jobs.scenario_network import build_network


def _history(means: dict[str, float], days: int = 14) -> pd.DataFrame:
    first = pd.Timestamp("2025-06-01")
    rows = [(sid, first + pd.Timedelta(days=d), m) for sid, m in means.items() for d in range(days)]
    return pd.DataFrame(rows, columns=["series_id", "ds", "y"])


def _every_route_history(catalogue) -> pd.DataFrame:
    return _history({f"people/point:{r.id}/{r.crossing_points[0].id}": 5.0 for r in catalogue})


def test_every_route_of_the_catalogue_makes_a_network_without_loops(catalogue):
    network = build_network(catalogue, _every_route_history(catalogue))
    assert set(network.routes) == set(catalogue.route_ids())
    assert len(network.points) == sum(len(r.crossing_points) for r in catalogue)
    for key in network.keys:
        out = sum(link.share for link in network.links_from(key))
        assert out == pytest.approx(1.0) or out == 0.0, key
    assert all(link.lag_days > 0 for link in network.links)


def test_links_follow_the_legs_people_travel(catalogue):
    network = build_network(catalogue, _every_route_history(catalogue))
    ways = {(k.route_id, k.from_point): {link.to_point for link in network.links_from(k.source)} for k in network.links}
    assert "lampedusa" in ways[("central_mediterranean", "zuwara")]  # the sea crossing
    assert ways[("central_mediterranean", "lampedusa")] == {"porto_empedocle"}  # the hotspot transfer to Sicily
    assert ways[("channel", "calais")] == {"dover"}
    # A landing at the end of its route leads nowhere: its people have arrived.
    assert network.links_from(("channel", "dover")) == ()
    assert network.exit_share(("channel", "dover")) == 1.0


def test_links_carry_their_legs_mode_so_the_coast_road_is_told_from_the_sea(catalogue):
    network = build_network(catalogue, _every_route_history(catalogue))
    modes = {link.to_point: link.mode for link in network.links_from(("central_mediterranean", "sabratha"))}
    assert modes == {"lampedusa": "sea", "zuwara": "land"}
    # People pass Sabratha on the road to Zuwara; nobody passes a landing "on" without a boat.
    assert [k.to_point for k in network.onward_links(("central_mediterranean", "sabratha"))] == ["zuwara"]
    assert network.onward_links(("central_mediterranean", "lampedusa")) == ()


def test_a_way_with_more_people_published_at_its_end_takes_the_larger_share(catalogue):
    # From Bodrum people go on to Kos (by sea) or to Marmaris (by road); three times as many are published at Kos.
    route = "people/point:eastern_mediterranean"
    history = _history({f"{route}/kos": 9.0, f"{route}/marmaris": 3.0})
    network = build_network(catalogue, history, routes=["eastern_mediterranean"])
    shares = {link.to_point: link.share for link in network.links_from(("eastern_mediterranean", "bodrum"))}
    assert shares == pytest.approx({"kos": 0.75, "marmaris": 0.25})


def test_a_route_the_release_has_no_series_of_is_left_out(catalogue):
    # A route with density but no people series stays: people may be diverted to it.
    history = _history({"people/point:channel/dover": 3.0, "density/route:central_mediterranean": 900.0})
    assert build_network(catalogue, history).routes == ("central_mediterranean", "channel")
    assert build_network(catalogue, None).points == ()


def test_the_network_survives_json_and_says_how_it_was_made(catalogue):
    network = build_network(catalogue, _every_route_history(catalogue))
    again = Network.from_dict(json.loads(json.dumps(network.to_dict())))
    assert again == network
    assert any("km/day" in note for note in again.notes)


@pytest.mark.parametrize(
    "data",
    [
        {"links": []},  # no points
        {"points": [{"route_id": "r", "point_id": "a"}]},  # no role
        {"points": [{"route_id": "r", "point_id": "a", "role": "departure"}], "links": [{"route_id": "r"}]},
        {"points": [{"route_id": "r", "point_id": "a", "role": "harbour"}]},  # unknown role
    ],
)
def test_a_malformed_network_is_refused_with_a_network_error(data):
    with pytest.raises(NetworkError):
        Network.from_dict(data)
