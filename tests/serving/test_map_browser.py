"""The map page in a real browser: Debian's headless Chromium driven by Playwright, against the API served by uvicorn
on 127.0.0.1 over a store written by the real publish step.

`make test` installs Chromium (Debian's package) when it is missing and it can; without it these tests skip, except
in CI (CI=true), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from serving.settings import ServingSettings
from tests.serving.conftest import AS_OF, CENTRAL_MED, CHANNEL, publish_people_release, publish_release, token

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ROUTECAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As stack-notes.md measured: without the background-networking flags Chromium tries hosts the closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (make test installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        _need(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ROUTECAST_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def served(settings) -> Iterator[str]:
    """The API for ``settings`` on a free loopback port, in a thread; yields its base url."""
    import uvicorn

    from serving.app import create_app

    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{uv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        uv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, catalogue) -> Iterator[tuple[str, ServingSettings]]:
    """The API over two published releases; yields (base url, settings)."""
    settings = ServingSettings(var_dir=tmp_path_factory.mktemp("map") / "var", reload_interval_s=0)
    publish_release(settings, catalogue, AS_OF - dt.timedelta(days=1), "run-1")
    publish_release(settings, catalogue, AS_OF, "run-2")
    with served(settings) as base:
        yield base, settings


class Visit:
    """One page in a fresh browser context: what it logged, what it asked for, and the page itself."""

    def __init__(self, browser, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 860})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(f"{base}/map")

    def sign_in(self, bearer: str, state: str = "ready") -> None:
        self.page.fill("#token", bearer)
        self.page.click("#login button")
        self.page.wait_for_selector(f"body[data-state={state}]", timeout=20_000)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, server) -> Iterator:
    opened: list[Visit] = []

    def open_page() -> Visit:
        opened.append(Visit(browser, server[0]))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


def _chart(page) -> dict:
    return page.evaluate(
        """() => {
          const c = Chart.getChart(document.getElementById('chart'));
          if (!c) return null;
          const sets = c.data.datasets.map(d => [d.label, d.data.filter(v => v !== null).length]);
          return {route: c.canvas.dataset.route, labels: c.data.labels.length, sets: Object.fromEntries(sets)};
        }"""
    )


def test_planner_sees_routes_cells_chart_arrivals_and_alerts(visit, server):
    base, settings = server
    v = visit()
    page = v.page
    # The country outlines are drawn before any token is given.
    page.wait_for_function("() => document.getElementById('map').dataset.countries > 100")
    v.sign_in(token(settings, "planner"))
    page.wait_for_function("() => document.getElementById('map').dataset.cellsDay !== undefined")

    routes = page.locator("#routes button")
    assert routes.count() == len(list(settings_catalogue(server)))
    assert page.locator(f"path.route-line.route-{CENTRAL_MED}").count() >= 1
    assert page.locator(f"path.crossing-point.route-{CHANNEL}").count() >= 1
    cells = page.locator("path.cell")
    assert cells.count() > 0 and page.locator("#map").get_attribute("data-cells-day") == str(AS_OF)
    assert "observed excess" in page.inner_text("#day-label")

    # The first route with a forecast is selected: its chart has history, forecast and both bands.
    chart = _chart(page)
    assert chart["route"] == CENTRAL_MED
    assert chart["sets"]["observed"] == 56 and chart["sets"]["forecast"] > 28 and chart["sets"]["95 % interval"] > 0
    # Arrivals: a row per landing point of the route, a column per day of the next 7, and the total.
    landings = [c for c in settings_catalogue(server).route(CENTRAL_MED).crossing_points if c.role == "landing"]
    assert page.locator("#arrivals tbody tr").count() == len(landings) > 0
    assert page.locator("#arrivals thead th").count() == 1 + 7 + 1
    assert page.locator("#alerts li").count() > 0

    # A forecast day on the slider: the cells now show the forecast spread over them.
    page.fill("#day", str(int(page.get_attribute("#day", "max"))))  # the last day: as_of + horizon
    page.wait_for_function(f"() => document.getElementById('map').dataset.cellsDay > '{AS_OF}'", timeout=10_000)
    assert "forecast" in page.inner_text("#day-label") and page.locator("path.cell").count() > 0

    # Selecting another route (from the list) draws its chart.
    page.click(f"#routes button[data-route={CHANNEL}]")
    page.wait_for_function(f"() => document.getElementById('chart').dataset.route === '{CHANNEL}'")
    assert _chart(page)["sets"]["forecast"] > 0
    page.wait_for_selector(f"#arrivals[data-route={CHANNEL}]")

    assert v.errors == []
    foreign = [u for u in v.requests if urlparse(u).netloc != urlparse(base).netloc and not u.startswith("data:")]
    assert foreign == [], "the page asked for something not served by routecast"


def settings_catalogue(server):
    from geo.catalogue import load_catalogue

    return load_catalogue(server[1].routes_dir)


def test_a_token_for_one_route_shows_only_that_route(visit, server):
    _, settings = server
    v = visit()
    v.sign_in(token(settings, "planner", [CHANNEL]))
    page = v.page
    assert [b.get_attribute("data-route") for b in page.locator("#routes button").all()] == [CHANNEL]
    assert page.locator(f".route-{CENTRAL_MED}").count() == 0
    assert page.locator(f"path.route-line.route-{CHANNEL}").count() >= 1
    assert _chart(page)["route"] == CHANNEL
    html = page.content()
    assert CENTRAL_MED not in html and "Central Mediterranean" not in html
    assert not [u for u in v.requests if CENTRAL_MED in u]
    assert {a.get_attribute("data-route") for a in page.locator("#alerts li[data-route]").all()} <= {CHANNEL}
    assert v.errors == []


def test_an_analyst_gets_routes_and_charts_and_no_planner_requests(visit, server):
    _, settings = server
    v = visit()
    v.sign_in(token(settings, "analyst"))
    page = v.page
    assert page.locator("#cells-controls").is_hidden() and page.locator("#alerts-section").is_hidden()
    assert "planner" in page.inner_text("#arrivals-note")
    assert _chart(page)["route"] == CENTRAL_MED
    assert v.errors == []  # no 403 was asked for
    assert not [u for u in v.requests if "/hexes" in u or "/arrivals" in u or "/alerts" in u]


def test_a_refused_token_says_why_and_shows_nothing(visit, server):
    v = visit()
    v.sign_in("not-a-token", state="login")
    page = v.page
    assert "Token refused" in page.inner_text("#status")
    assert page.locator("#routes button").count() == 0 and page.locator("path.route-line").count() == 0


def test_scrubbing_the_day_slider_draws_the_last_day_and_stays_within_the_rate_limit(visit, server):
    _, settings = server
    v = visit()
    v.sign_in(token(settings, "planner"))
    page = v.page
    page.wait_for_function("() => document.getElementById('map').dataset.cellsDay !== undefined")
    last = int(page.get_attribute("#day", "max"))
    for i in range(last + 1):  # every day in turn, as fast as the browser takes them
        page.fill("#day", str(i))
    final = str(AS_OF + dt.timedelta(days=28))
    page.wait_for_function(f"() => document.getElementById('map').dataset.cellsDay === '{final}'", timeout=20_000)
    hexes = [u for u in v.requests if "/hexes" in u]
    assert len(hexes) == len(set(hexes)), "a day's cells were asked for twice"
    assert len(hexes) < last, "every step of the slider was asked for: scrubbing would exhaust the rate limit"
    assert v.errors == []


def test_before_the_first_release_the_page_says_so_and_asks_for_nothing_it_cannot_have(browser, tmp_path):
    settings = ServingSettings(var_dir=tmp_path / "var", reload_interval_s=0)  # an empty store
    with served(settings) as base:
        v = Visit(browser, base)
        try:
            v.sign_in(token(settings, "planner"))
            assert "no release served yet" in v.page.inner_text("#release")
            assert v.page.locator("#routes button").count() > 0  # the catalogue, without forecasts
            assert v.page.locator("#cells-controls").is_hidden() and v.page.locator("#route-panel").is_hidden()
            assert v.errors == []
        finally:
            v.close()


@pytest.fixture(scope="module")
def people_server(tmp_path_factory, catalogue) -> Iterator[tuple[str, ServingSettings]]:
    """The API over a release with people series for the Central Mediterranean only."""
    settings = ServingSettings(var_dir=tmp_path_factory.mktemp("map-people") / "var", reload_interval_s=0)
    publish_people_release(settings, catalogue)
    with served(settings) as base:
        yield base, settings


def test_the_page_answers_in_people_where_the_release_has_them_and_says_devices_elsewhere(browser, people_server):
    base, settings = people_server
    v = Visit(browser, base)
    try:
        page = v.page
        v.sign_in(token(settings, "planner"))
        page.wait_for_selector(f"#arrivals[data-route={CENTRAL_MED}]")
        chart = page.locator("#chart")
        assert (chart.get_attribute("data-route"), chart.get_attribute("data-unit")) == (CENTRAL_MED, "people")
        assert page.input_value("#source") == "people" and "people" in page.inner_text("#chart-note")
        assert page.evaluate("() => Chart.getChart(document.getElementById('chart')).options.scales.y.title.text") == (
            "people"
        )
        # Arrivals: the points with a people series say people, the others devices, and the note says they differ.
        units = {
            td.inner_text().split("\n")[0]: td.get_attribute("data-unit")
            for td in page.locator("#arrivals tbody td[data-unit]").all()
        }
        names = {cp.id: cp.name for cp in settings_catalogue(people_server).route(CENTRAL_MED).crossing_points}
        assert units[names["valletta"]] == units[names["pozzallo"]] == units[names["lampedusa"]] == "people"
        assert units[names["porto_empedocle"]] == "devices"
        assert page.locator("#arrivals").get_attribute("data-unit") == "mixed"
        assert "Units differ" in page.inner_text("#arrivals-note")
        # The week's total: the interval of the total where the release has one (Valletta's and Pozzallo's people
        # series), the sum of the daily bounds marked Σ elsewhere (Lampedusa's has no total; devices have none).
        totals = {
            td.evaluate("td => td.parentElement.cells[0].innerText.split('\\n')[0]"): td
            for td in page.locator("#arrivals tbody td[data-interval]").all()
        }
        assert totals[names["valletta"]].get_attribute("data-interval") == "total"
        assert "Σ" not in totals[names["valletta"]].inner_text()
        assert totals[names["lampedusa"]].get_attribute("data-interval") == "sum_of_daily_bounds"
        assert "Σ" in totals[names["lampedusa"]].inner_text() and "interval of the total" in page.inner_text(
            "#arrivals-note"
        )

        # The device series stay available as diagnostics, and say so.
        page.select_option("#source", "density")
        page.wait_for_function("() => document.getElementById('chart').dataset.unit === 'devices'")
        assert "not people" in page.inner_text("#chart-note")

        # A route without people series answers in devices.
        page.click(f"#routes button[data-route={CHANNEL}]")
        page.wait_for_selector(f"#arrivals[data-route={CHANNEL}]")
        page.wait_for_function(f"() => document.getElementById('chart').dataset.route === '{CHANNEL}'")
        assert chart.get_attribute("data-unit") == "devices" and page.input_value("#source") == "density"
        assert page.locator("#arrivals").get_attribute("data-unit") == "devices"
        assert "devices (phones" in page.inner_text("#arrivals-note")
        assert v.errors == []
    finally:
        v.close()
