"""Releases, reload and the atomic swap of the served release."""

import datetime as dt
import io
import threading
from csv import DictReader

from fastapi.testclient import TestClient

from jobs.stages import publish
from serving.app import create_app
from tests.serving.conftest import AS_OF, CHANNEL, bearer, publish_release


def test_releases_newest_first_with_the_current_one_marked(client):
    body = client.get("/v1/releases").json()
    assert [r["as_of"] for r in body["releases"]] == ["2025-03-01", "2025-02-28"]
    assert [r["current"] for r in body["releases"]] == [True, False]
    assert body["serving"] == body["releases"][0]["release_id"]
    assert all(r["error"] is None and r["run_id"] for r in body["releases"])


def test_reload_picks_up_a_new_release_and_requests_never_fail_during_the_swap(published, catalogue):
    # A limit the hammering thread cannot exhaust however slow the machine: this is about the swap, not the limit.
    settings = published.model_copy(update={"rate_limit_burst": 10**9})
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(settings, "admin"))
        _reload_while_hammering(client, settings, catalogue)


def _reload_while_hammering(client, published, catalogue):
    before = client.get("/readyz").json()["release_id"]
    url = f"/v1/routes/{CHANNEL}/forecast"
    seen, failures, stop, answered = set(), [], threading.Event(), threading.Event()

    def hammer():
        with TestClient(client.app) as other:  # the same app (and state), a second client
            other.headers.update(client.headers)
            while not stop.is_set():
                r = other.get(url, params={"horizon": 1})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    seen.add(r.json()["release_id"])
                    answered.set()

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        # The swap must happen while requests are flowing: wait for the first answer, however slow the machine.
        assert answered.wait(timeout=120), "the hammering client got no answer"
        new = publish_release(published, catalogue, AS_OF + dt.timedelta(days=1), "run-3")
        body = client.post("/v1/admin/reload").json()
        assert body == {"release_id": new.release_id, "changed": True, "detail": None}
        assert client.get("/readyz").json()["release_id"] == new.release_id
        assert client.get(url, params={"horizon": 1}).json()["release_id"] == new.release_id
    finally:
        stop.set()
        worker.join()
    assert failures == [] and before in seen
    assert client.post("/v1/admin/reload").json()["changed"] is False


def test_a_corrupt_new_release_never_replaces_the_served_one(client, published):
    served = client.get("/readyz").json()["release_id"]
    bad = published.store_dir / "releases" / "20250302-000000000000"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    publish.point_current(published.store_dir, served)  # sanity: pointing works for real releases
    (published.store_dir / "CURRENT").write_text(bad.name + "\n")
    body = client.post("/v1/admin/reload").json()
    assert body["changed"] is False and body["release_id"] == served and "unreadable" in body["detail"]
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["release_id"] == served and "unreadable" in ready["detail"]
    assert client.get(f"/v1/routes/{CHANNEL}/forecast").status_code == 200
    listed = {r["release_id"]: r for r in client.get("/v1/releases").json()["releases"]}
    assert "unreadable" in listed[bad.name]["error"]


def test_the_api_watches_the_store_by_itself(published, catalogue):
    settings = published.model_copy(update={"reload_interval_s": 0.05})
    with TestClient(create_app(settings)) as c:
        first = c.get("/readyz").json()["release_id"]
        new = publish_release(settings, catalogue, AS_OF + dt.timedelta(days=1), "run-3")
        for _ in range(200):
            if c.get("/readyz").json()["release_id"] == new.release_id:
                break
            threading.Event().wait(0.02)
        assert first != new.release_id and c.get("/readyz").json()["release_id"] == new.release_id


def test_admin_endpoints_need_the_admin_role(api, published):
    for role in ("analyst", "planner"):
        headers = bearer(published, role)
        assert api.get("/v1/releases", headers=headers).status_code == 403
        assert api.post("/v1/admin/reload", headers=headers).status_code == 403


def test_a_route_scoped_admin_is_told_the_rows_of_its_routes_only(api, published):
    """The leak: a Channel-only admin read how many forecast rows every route had (e.g. 7 routes' worth)."""
    import pyarrow.parquet as pq

    everyone = api.get("/v1/releases", headers=bearer(published, "admin")).json()["releases"]
    channel = api.get("/v1/releases", headers=bearer(published, "admin", [CHANNEL])).json()["releases"]
    assert [r["release_id"] for r in channel] == [r["release_id"] for r in everyone]
    for wide, narrow in zip(everyone, channel, strict=True):
        table = pq.read_table(published.store_dir / "releases" / wide["release_id"] / "forecasts.parquet")
        route_ids = table.column("route_id").to_pylist()
        assert wide["rows"] == len(route_ids)
        assert narrow["rows"] == route_ids.count(CHANNEL) < wide["rows"]
    csv = api.get("/v1/releases", headers={**bearer(published, "admin", [CHANNEL]), "Accept": "text/csv"}).text
    assert [int(r["rows"]) for r in DictReader(io.StringIO(csv))] == [r["rows"] for r in channel]
