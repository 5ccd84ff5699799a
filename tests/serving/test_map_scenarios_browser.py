"""The map page's what-if scenarios in a real browser (Playwright and Debian's Chromium, as test_map_browser.py):
a planner picks a kept scenario and sees its baseline and scenario per day on a chart in people, and the difference
it makes at the crossing points on the map; an analyst never sees the section nor asks for it.

The store is the scenario release of test_scenarios.py (a route network and people forecasts); the scenarios are
kept through the served API itself before the page is opened.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import pytest

from serving.settings import ServingSettings
from tests.serving.conftest import CENTRAL_MED, CHANNEL, token
from tests.serving.test_map_browser import Visit, browser, served  # noqa: F401 (browser: a fixture)
from tests.serving.test_scenarios import HORIZON, closure, publish_scenario_release

pytestmark = pytest.mark.browser

DRAWS = 100
ZUWARA = (CENTRAL_MED, "zuwara")


@pytest.fixture(scope="module")
def scenario_server(tmp_path_factory, catalogue) -> Iterator[tuple[str, ServingSettings, dict[str, dict]]]:
    """The API over the scenario release with two scenarios kept: Zuwara closed a week with some diverting to the
    Channel (both routes), and Calais closed (the Channel only). Yields (base url, settings, scenario by name as
    GET /v1/scenarios/{id} answers it)."""
    settings = ServingSettings(
        var_dir=tmp_path_factory.mktemp("map-scenarios") / "var", reload_interval_s=0, scenario_draws=DRAWS
    )
    publish_scenario_release(settings, catalogue)
    specs = {
        "zuwara": {
            "name": "Zuwara closed a week, some to the Channel",
            "seed": 5,
            "interventions": [closure(divert=[{"to": "route:channel", "share": 0.3}])],
        },
        "calais": {"name": "Calais closed", "seed": 5, "interventions": [closure("point:channel/calais")]},
    }
    with served(settings) as base:
        headers = {"Authorization": f"Bearer {token(settings, 'planner')}", "Content-Type": "application/json"}
        kept = {}
        for key, spec in specs.items():
            r = httpx.post(f"{base}/v1/scenarios", content=json.dumps(spec), headers=headers, timeout=60)
            assert r.status_code == 201, r.text
            kept[key] = httpx.get(f"{base}{r.headers['location']}", headers=headers, timeout=60).json()
        yield base, settings, kept


@pytest.fixture
def visit(browser, scenario_server) -> Iterator:  # noqa: F811 (the browser fixture imported above)
    opened: list[Visit] = []

    def open_page() -> Visit:
        opened.append(Visit(browser, scenario_server[0]))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


def _scenario_chart(page) -> dict:
    return page.evaluate(
        """() => {
          const c = Chart.getChart(document.getElementById('scenario-chart'));
          return {
            labels: c.data.labels,
            sets: Object.fromEntries(c.data.datasets.map(d => [d.label, d.data])),
            unit: c.options.scales.y.title.text,
          };
        }"""
    )


def _people(x: float) -> str:
    """A figure as the page writes it: rounded half up, thousands grouped."""
    return f"{math.floor(x + 0.5):,}"


def test_a_planner_picks_a_scenario_and_sees_baseline_and_scenario_on_the_chart_and_map(
    visit, scenario_server, catalogue
):
    _, settings, kept = scenario_server
    zuwara = kept["zuwara"]
    v = visit()
    page = v.page
    v.sign_in(token(settings, "planner"))
    page.wait_for_selector("#scenarios-section:not([hidden])")
    options = page.locator("#scenario option")
    values = [o.get_attribute("value") for o in options.all()]
    assert sorted(values) == sorted(["", zuwara["scenario_id"], kept["calais"]["scenario_id"]])
    label = options.nth(values.index(zuwara["scenario_id"])).inner_text()
    assert label.startswith("Zuwara closed a week, some to the Channel · ") and label.endswith(
        zuwara["scenario_id"][:8]
    )
    assert page.locator("#scenario-detail").is_hidden()

    page.select_option("#scenario", zuwara["scenario_id"])
    page.wait_for_function(
        f"() => document.getElementById('scenario-chart').dataset.scenario === '{zuwara['scenario_id']}'"
    )
    canvas = page.locator("#scenario-chart")
    # First shown: the point the closure acts on, one value per day of the horizon, baseline and scenario.
    assert canvas.get_attribute("data-series") == f"point|{CENTRAL_MED}|zuwara"
    assert (canvas.get_attribute("data-rows"), canvas.get_attribute("data-unit")) == (str(HORIZON), "people")
    chart = _scenario_chart(page)
    assert chart["unit"] == "people" and len(chart["labels"]) == HORIZON
    assert {"baseline", "scenario", "baseline 80 %", "scenario 80 %"} <= set(chart["sets"])
    # Zuwara is closed from the 5th to the 11th: nobody crosses there on the 6th; the baseline says about 100.
    day = chart["labels"].index("2025-03-06")
    assert chart["sets"]["scenario"][day] == 0 and 85 < chart["sets"]["baseline"][day] < 115
    assert chart["sets"]["baseline 80 %"][day] > chart["sets"]["baseline"][day]
    note = page.inner_text("#scenario-note")
    assert f"on release {zuwara['meta']['release_id']}" in note and "not a forecast of what will happen" in note

    # The series on offer: each point and route the scenario shows, named as the page names them.
    series = page.locator("#scenario-row option")
    texts = series.all_inner_texts()
    place = {cp.id: cp.name for cp in catalogue.route(CENTRAL_MED).crossing_points}["zuwara"]
    assert f"people crossing at {place}" in texts and f"people waiting at {place}" in texts
    assert f"people present on {catalogue.route(CHANNEL).name}" in texts
    assert len(texts) == len({(r["kind"], r["route_id"], r["point_id"]) for r in zuwara["summary"]})
    page.select_option("#scenario-row", f"route|{CHANNEL}|")
    page.wait_for_function(f"() => document.getElementById('scenario-chart').dataset.series === 'route|{CHANNEL}|'")
    assert len(_scenario_chart(page)["sets"]["scenario"]) == HORIZON

    # On the map: a marker at each crossing point the scenario shows, with its difference over the window.
    points = [r for r in zuwara["summary"] if r["kind"] == "point" and r["measure"] == "total"]
    marked = page.eval_on_selector_all(  # (route, point) of each marker, from its classes route-… and point-…
        "path.scenario-point",
        "ps => ps.map(p => ['route-', 'point-'].map(k => [...p.classList].find(c => c.startsWith(k)).slice(6)))",
    )
    marked = {tuple(m) for m in marked}
    assert marked == {(r["route_id"], r["point_id"]) for r in points} and ZUWARA in marked
    assert page.get_attribute("#map", "data-scenario-markers") == str(len(points))
    row = next(r for r in points if (r["route_id"], r["point_id"]) == ZUWARA)
    page.locator("path.scenario-point.point-zuwara").dispatch_event("mouseover")
    tip = page.locator(".leaflet-tooltip").last
    tip.wait_for()
    assert tip.inner_text().split("\n")[-1] == (
        f"baseline {_people(row['baseline_yhat'])}, scenario {_people(row['scenario_yhat'])}, "
        f"difference {_people(row['difference_yhat'])} "
        f"[{_people(row['difference_lo80'])}, {_people(row['difference_hi80'])}] people"
    )
    # A week closed at about 100 a day, 30 % diverting and the rest crossing after it reopens: about 210 fewer.
    assert -300 < row["difference_yhat"] < -120
    assert v.errors == []


def test_a_planner_of_one_route_is_offered_only_the_scenarios_it_may_read(visit, scenario_server):
    _, settings, kept = scenario_server
    v = visit()
    v.sign_in(token(settings, "planner", [CHANNEL]))
    page = v.page
    page.wait_for_selector("#scenarios-section:not([hidden])")
    values = [o.get_attribute("value") for o in page.locator("#scenario option").all()]
    assert values == ["", kept["calais"]["scenario_id"]]
    assert "Zuwara" not in page.content()
    assert v.errors == []


def test_an_analyst_never_sees_the_scenarios_nor_asks_for_them(visit, scenario_server):
    _, settings, _ = scenario_server
    v = visit()
    v.sign_in(token(settings, "analyst"))
    assert v.page.locator("#scenarios-section").is_hidden()
    assert not [u for u in v.requests if "/v1/scenarios" in u]
    assert v.errors == []
