"""Files are not world-readable (design.md): what the `routecast` commands and the API they start create under var/
is 0640 and 0750 at most, whatever umask the shell had, and Spark's scratch is a private folder (0700).

The real run goes through subprocesses started with umask 022 (a fresh JVM inherits the CLI's umask, as in
production; the test session's JVM was started with pytest's). The in-process test restores the umask it changes.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from geo.catalogue import DEFAULT_ROUTES_DIR, load_catalogue
from jobs.spark import PRIVATE_UMASK
from routecast import cli
from tests.cli_env import routecast_env
from tests.synth import SynthConfig, generate_pings

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2025, 6, 30)


def _loose(var: Path) -> dict[str, str]:
    """Every file and folder under ``var`` (itself included) that the group may write or others may use."""
    paths = [var, *var.rglob("*")]
    return {str(p.relative_to(var)): oct(p.lstat().st_mode & 0o777) for p in paths if p.lstat().st_mode & 0o027}


@pytest.fixture
def umask_restored() -> Iterator[int]:
    """The process umask before the test (set to 022 for it), put back afterwards: it is process-wide."""
    before = os.umask(0o022)
    try:
        yield before
    finally:
        os.umask(before)


def test_every_command_narrows_the_umask_first(tmp_path, monkeypatch, umask_restored):
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(cli.app, ["status"])  # no Spark; it creates the run ledger
    assert result.exit_code == 0, result.output
    assert os.umask(0o022) == 0o027
    assert (tmp_path / "var" / "runs" / "ledger.sqlite").is_file()
    assert _loose(tmp_path / "var") == {}

    os.umask(0o077)  # a tighter umask is kept
    CliRunner().invoke(cli.app, ["status"])
    assert os.umask(0o022) == 0o077


def test_the_cli_and_the_spark_module_agree_on_the_umask():
    assert cli.PRIVATE_UMASK == PRIVATE_UMASK == 0o027


def _env(world: Path, var: Path) -> dict[str, str]:
    return routecast_env(world, var, ROUTECAST_RELOAD_INTERVAL_S="0")


def _routecast(*args: str) -> list[str]:
    return [sys.executable, "-m", "routecast.cli", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_nightly_run_and_the_api_it_serves_leave_nothing_readable_by_others(tmp_path):
    world = tmp_path / "world"
    (world / "routes").mkdir(parents=True)
    shutil.copy(DEFAULT_ROUTES_DIR / "channel.geojson", world / "routes")
    cfg = SynthConfig(
        start=END - dt.timedelta(days=29), days=30, background_per_hub=30, migrants_per_hub=10, spread_km=0.2
    )
    generate_pings(load_catalogue(world / "routes"), cfg, world / "raw")
    var = tmp_path / "var"
    env = _env(world, var)

    # umask=0o022: the shell's usual umask, which would leave every file 0644 and every folder 0755.
    run = subprocess.run(
        _routecast("nightly", "--date", str(END), "--raw", str(world / "raw")),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        umask=0o022,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert any((var / "store" / "releases").iterdir())  # the run went all the way to a release
    assert (var / "spark-tmp").stat().st_mode & 0o777 == 0o700

    made = subprocess.run(
        _routecast("token", "create", "--role", "admin", "--subject", "modes", "--ttl", "1h"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    server = subprocess.Popen(
        _routecast("serve", "--port", str(port)),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0o022,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        read = httpx.get(f"{base}/v1/routes", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert read.status_code == 200, read.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert any(p.is_file() for p in (var / "audit").rglob("*"))  # the API wrote its audit log

    assert _loose(var) == {}
