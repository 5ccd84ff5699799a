"""The map page and what it reads, without a browser: the page and its assets are served by the API itself (no
network needed), /v1/me names the caller, /v1/routes says which days have cells. The browser tests are in
test_map_browser.py."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

from serving.routers.dashboard import STATIC_DIR
from tests.serving.conftest import AS_OF, CENTRAL_MED, CHANNEL, HORIZON, bearer, token


class Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and not a["href"].startswith("data:"):
            self.urls.append(a["href"])


def test_page_is_open_and_locked_to_its_own_origin(api):
    page = api.get("/map")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "script-src 'self';" in csp
    assert "<script>" not in page.text  # no inline script: the policy forbids it


def test_every_asset_the_page_names_is_served_from_the_package(api):
    parser = Assets()
    parser.feed(api.get("/map").text)
    assert len(parser.urls) == 6, parser.urls  # leaflet css + js, the page's css + js, topojson-client, chart.js
    for url in parser.urls:
        assert not re.match(r"^[a-z]+:|^//", url), f"{url} is not served by routecast"
        answer = api.get("/" + url)  # relative to /map
        assert answer.status_code == 200, url
        assert len(answer.content) > 1000, url
    outlines = api.get("/map/static/vendor/countries-50m.json", headers={"Accept-Encoding": "gzip"})
    assert outlines.status_code == 200 and outlines.json()["type"] == "Topology"
    assert outlines.headers["content-encoding"] == "gzip"
    assert outlines.num_bytes_downloaded < len(outlines.content) / 2


def test_the_page_own_code_fetches_nothing_from_elsewhere():
    for name in ("map.html", "map.js", "map.css"):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""(?:src|href|url|fetch)\s*[=(]\s*["'`]?(?:https?:)?//""", text), name


def test_page_is_not_in_the_api_document(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/map")]


def test_me_names_the_caller_and_is_never_served_to_another(api, published):
    first = api.get("/v1/me", headers={"Authorization": f"Bearer {token(published, 'planner', [CHANNEL], 'ana')}"})
    assert first.status_code == 200
    body = first.json()
    assert body["subject"] == "ana" and body["role"] == "planner" and body["routes"] == [CHANNEL]
    assert dt.datetime.fromisoformat(body["expires"]) > dt.datetime.now(dt.UTC)
    # Same role and scope, another subject: the answer cache must not hand ana's answer to bob.
    second = api.get("/v1/me", headers={"Authorization": f"Bearer {token(published, 'planner', [CHANNEL], 'bob')}"})
    assert second.json()["subject"] == "bob"
    assert api.get("/v1/me").status_code == 401
    assert api.get("/v1/me", headers=bearer(published, "analyst")).json()["routes"] is None


def test_routes_say_which_days_the_hexes_endpoint_answers(client):
    body = client.get("/v1/routes").json()
    assert body["as_of"] == str(AS_OF) and body["cell_resolutions"] == [5, 7]
    by_id = {r["id"]: r for r in body["routes"]}
    days = by_id[CENTRAL_MED]["cell_days"]
    assert days == {
        "first": str(AS_OF - dt.timedelta(days=27)),
        "as_of": str(AS_OF),
        "last": str(AS_OF + dt.timedelta(days=HORIZON)),
    }
    assert by_id[CHANNEL]["cell_days"] is None  # the fixture publishes cells for one route only
    # The span is exactly what the hexes endpoint answers for, at both ends and no further.
    hexes = f"/v1/routes/{CENTRAL_MED}/hexes"
    first, last = dt.date.fromisoformat(days["first"]), dt.date.fromisoformat(days["last"])
    for day, status in [(first, 200), (last, 200), (first - dt.timedelta(days=1), 404), (last + dt.timedelta(1), 404)]:
        assert client.get(hexes, params={"date": str(day)}).status_code == status, day


def test_the_page_has_a_hidden_scenario_section_with_its_controls(api):
    html = api.get("/map").text
    section = re.search(r'<section id="scenarios-section" hidden>(.*?)</section>', html, re.S)
    assert section is not None, "the what-if section is missing or shown before a planner token is given"
    body = section.group(1)
    assert "What-if scenarios" in body
    for control in ('<select id="scenario">', '<select id="scenario-row">', '<canvas id="scenario-chart"'):
        assert control in body, control
