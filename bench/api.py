"""Benchmark: requests/s and latency of the forecast endpoint, beside a trivial FastAPI endpoint measured the same way.

    .venv/bin/python bench/api.py [--clients 50] [--seconds 30] [--workers 1] [--rounds 1]

What runs, all on 127.0.0.1 of this machine:

- a store: two releases written by the real publish step (``jobs.stages.publish.publish``, bench/_api_store.py) with a
  28-day density forecast (80 and 95 % intervals) and 365 days of history for every series of the catalogue's
  hierarchy (all, 7 routes, their 101 segments: 109 series), and suppressed cells of every segment at res 5 and 7;
- the API: ``python -m uvicorn serving.app:create_app --factory --host 127.0.0.1 --port P --no-access-log
  --log-level warning --workers N`` in a subprocess, on that store (``ROUTECAST_VAR_DIR``), without store polling
  (``ROUTECAST_RELOAD_INTERVAL_S=0``) and with a rate limit no client can reach (burst 10,000,000, 1e9 a minute):
  the limiter, the token check and the audit log still run on every request, the limiter just never refuses;
- the trivial endpoint: ``GET /ping`` of bench/_trivial_app.py (one FastAPI route answering ``{"ok": true}``, no
  middleware, no auth), served by the same uvicorn command and worker count;
- the load (bench/_api_load.py) in a third process: ``--clients`` keep-alive HTTP/1.1 connections, each sending a
  GET as soon as the previous answer is read in full (closed loop), on one asyncio/uvloop event loop with a minimal
  HTTP parser, so that the client costs as little CPU as possible. Each connection of the forecast run has its own
  analyst token (``serving.auth.create_token``, all routes; a real deployment has many users) and walks the
  request mix: every route × ``level=route|segment`` × ``horizon=7|14|28`` (42 distinct requests, JSON). The
  server caches each answer per release, so after the first pass (in the warm-up) every request is a cache hit:
  what is measured is the per-request cost of the app (routing, validation, token, limiter, audit, sending the
  cached body), not the building of a forecast. The trivial run sends no token. A third run (``--cold``, default on)
  drives the same endpoint with 11,760 distinct requests (every horizon 1..28 × 30 history lengths), more than
  both caches hold, so every answer is made anew: the cost of a first request, reported without a target.

Each endpoint gets ``--warmup`` seconds (not recorded), then ``--seconds`` measured: requests/s counts the answers
completed in the window; latency is from writing the request to reading the last byte of the answer. Every
non-200 answer is counted (there should be none), and the first answer of each distinct forecast request is checked
(JSON, the route's number of series, ``horizon`` points each). The trivial endpoint is measured first, then the
forecast endpoint (``--rounds`` alternates them again). Also printed: CPU of the server's processes (cores busy,
and ms per request), of the client (share of one core: at 100 % the client would be the bottleneck), and the
machine's **other load** (share of its cores used by processes outside the benchmark during the window: figures
taken under load are lower than the machine can do, the trivial endpoint's and the forecast's alike).

Targets (the issue): the forecast endpoint serves at least 60 % of the trivial endpoint's requests/s, with a p99
latency under 50 ms, at 50 clients.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `jobs` and `serving` importable
    sys.path.insert(0, str(ROOT))

from bench._procs import load_average  # noqa: E402

AS_OF = dt.date(2026, 11, 30)
HORIZONS = (7, 14, 28)
LEVELS = ("route", "segment")
TARGET_RATIO = 0.60
TARGET_P99_MS = 50.0
# High enough never to refuse a request of the bench; the limiter still takes a token from a bucket every time.
RATE_LIMIT_ENV = {"ROUTECAST_RATE_LIMIT_BURST": "10000000", "ROUTECAST_RATE_LIMIT_PER_MINUTE": "1e9"}
# The default budget: the cached mix (42 answers) fits many times over; the cold mix (~12k answers) does not.
CACHE_MB = 64
UVICORN_FLAGS = ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]


@dataclass
class Run:
    endpoint: str  # "trivial" | "forecast"
    round: int
    seconds: float
    completed: int
    latencies_ms: list[float] = field(repr=False)
    bytes: int
    errors: dict[str, int]
    error_sample: str | None
    reconnects: int
    client_cpu: float
    server_cpu: float
    server_processes: int
    other_load: float
    checked: int
    distinct: int
    bad: list[str]
    loop: str

    @property
    def rps(self) -> float:
        return self.completed / self.seconds

    @property
    def non_200(self) -> int:
        return sum(self.errors.values())


# ----------------------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path
    command: list[str]
    started_s: float = 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(name: str, target: list[str], workers: int, env: dict[str, str], tmp: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", *target, *UVICORN_FLAGS, "--port", str(port), "--workers", str(workers)]
    log = tmp / f"{name}-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, proc, port, log, command)


def wait_ready(server: Server, path: str, timeout: float = 180.0) -> None:
    """Poll ``path`` until it answers 200; stop with the server's output if it exits or never gets there."""
    t0 = time.perf_counter()
    last = "no answer"
    while time.perf_counter() - t0 < timeout:
        if server.proc.poll() is not None:
            raise SystemExit(
                f"the {server.name} server exited with {server.proc.returncode} before it was ready:\n"
                f"{' '.join(server.command)}\n{server.log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as answer:
                if answer.status == 200:
                    server.started_s = time.perf_counter() - t0
                    return
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    server.stop()
    raise SystemExit(
        f"the {server.name} server was not ready after {timeout:.0f} s (last: {last}):\n"
        f"{server.log.read_text(errors='replace')[-4000:]}"
    )


# ----------------------------------------------------------------------------------------------------------------
# Load


def run_load(endpoint: str, round_: int, server: Server, spec: dict, console) -> Run:
    spec = {**spec, "port": server.port, "server_pid": server.proc.pid, "root_pid": os.getpid()}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "_api_load.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=spec["warmup"] + spec["seconds"] + 120,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the load generator failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout)
    run = Run(
        endpoint=endpoint,
        round=round_,
        seconds=out["seconds"],
        completed=out["completed"],
        latencies_ms=[x * 1000.0 for x in out["latencies"]],
        bytes=out["bytes"],
        errors=out["errors"],
        error_sample=out["error_sample"],
        reconnects=out["reconnects"],
        client_cpu=out["client_cpu"],
        server_cpu=out["server_cpu"],
        server_processes=out["server_processes"],
        other_load=out["other_load"],
        checked=out["checked"],
        distinct=out["distinct"],
        bad=out["bad"],
        loop=out["loop"],
    )
    p50, p99 = np.percentile(run.latencies_ms, [50, 99]) if run.latencies_ms else (float("nan"),) * 2
    console.log(
        f"{endpoint} (round {round_}): {run.rps:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"{run.non_200} non-200, client CPU {run.client_cpu / run.seconds:.0%}, other load {run.other_load:.0%}; "
        f"load average {load_average():.1f}"
    )
    return run


@dataclass
class Summary:
    label: str
    seconds: float
    completed: int
    rps: float
    p50: float
    p99: float
    max: float
    non_200: int
    kib_per_answer: float
    server_cores: float
    server_ms_per_request: float
    client_core: float
    other_load: float


def summarise(label: str, runs: list[Run]) -> Summary:
    seconds = sum(r.seconds for r in runs)
    completed = sum(r.completed for r in runs)
    lat = np.concatenate([np.asarray(r.latencies_ms) for r in runs]) if runs else np.array([])
    p50, p99, top = np.percentile(lat, [50, 99, 100]) if lat.size else (float("nan"),) * 3
    server_cpu = sum(r.server_cpu for r in runs)
    return Summary(
        label=label,
        seconds=seconds,
        completed=completed,
        rps=completed / seconds,
        p50=float(p50),
        p99=float(p99),
        max=float(top),
        non_200=sum(r.non_200 for r in runs),
        kib_per_answer=sum(r.bytes for r in runs) / max(completed, 1) / 1024,
        server_cores=server_cpu / seconds,
        server_ms_per_request=1000 * server_cpu / max(completed, 1),
        client_core=sum(r.client_cpu for r in runs) / seconds,
        other_load=sum(r.other_load * r.seconds for r in runs) / seconds,
    )


def print_table(rows: list[tuple[Summary, Summary | None]], console) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.MARKDOWN, show_edge=True)
    columns = (
        "endpoint",
        "requests/s",
        "× trivial",
        "p50 ms",
        "p99 ms",
        "max ms",
        "non-200",
        "KiB/answer",
        "server cores",
        "server CPU ms/req",
        "client CPU",
        "other load",
    )
    for col in columns:
        table.add_column(col, justify="left" if col == "endpoint" else "right", no_wrap=True)
    for s, base in rows:
        table.add_row(
            s.label,
            f"{s.rps:,.0f}",
            f"{s.rps / base.rps:.2f}" if base else "1.00",
            f"{s.p50:.1f}",
            f"{s.p99:.1f}",
            f"{s.max:.1f}",
            f"{s.non_200:,}",
            f"{s.kib_per_answer:.2f}",
            f"{s.server_cores:.2f}",
            f"{s.server_ms_per_request:.3f}",
            f"{s.client_core:.0%}",
            f"{s.other_load:.0%}",
        )
    console.print(table)


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent keep-alive connections (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per endpoint (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes per server (default 1)")
    parser.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the forecast endpoint with no cache hit (reported, no target; default on)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="trivial then forecast, this many times (default 1)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the store (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the store, server logs and audit log")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.warmup < 0 or args.workers < 1 or args.rounds < 1:
        parser.error("--clients, --seconds, --workers and --rounds must be positive, --warmup not negative")

    load_before = os.getloadavg()
    from rich.console import Console

    console = Console(width=max(Console().width, 190), soft_wrap=True)
    cores = os.cpu_count() or 1
    console.log(
        f"{cores} cores, load average before start {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f} (1 / 5 / 15 min); {args.clients} clients, {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s per endpoint, {args.rounds} round(s), uvicorn --workers {args.workers}"
    )

    from bench._api_store import HISTORY_DAYS, HORIZON, build_store
    from geo.catalogue import load_catalogue
    from serving.auth import create_token
    from serving.settings import ServingSettings

    tmp = Path(tempfile.mkdtemp(prefix="routecast-bench-api-", dir=args.tmp))
    var = tmp / "var"
    servers: list[Server] = []
    runs: list[Run] = []
    try:
        t0 = time.perf_counter()
        info = build_store(var / "store", AS_OF)
        console.log(
            f"store built in {time.perf_counter() - t0:.1f} s (not timed): releases {', '.join(info.release_ids)} "
            f"(current: the last); {info.series} series × {HORIZON} days forecast, {HISTORY_DAYS} days history "
            f"({info.history_rows:,} rows), {info.cell_rows:,} cell rows; {info.bytes_on_disk / 2**20:.1f} MiB"
        )

        settings = ServingSettings(var_dir=var)
        tokens = [
            create_token(settings, subject=f"bench-{i}", role="analyst", routes=None, ttl=dt.timedelta(hours=1))
            for i in range(args.clients)
        ]
        routes = [r.id for r in load_catalogue()]
        paths, expect = [], []
        for route_id in routes:
            for level in LEVELS:
                for h in HORIZONS:
                    paths.append(f"/v1/routes/{route_id}/forecast?level={level}&horizon={h}")
                    expect.append({"series": info.series_per_request[(route_id, level)], "horizon": h})

        # The cold mix: so many distinct requests (every horizon 1..28 × 30 history lengths, ~12k answers of
        # 2-60 kB) that each one comes back only after the answer cache (ROUTECAST_ANSWER_CACHE_MB, least recently
        # used out first) has dropped it: every answer is made anew (routing, validation, slicing, serialising).
        cold_paths, cold_expect = [], []
        for history in range(0, 60, 2):
            for route_id in routes:
                for level in LEVELS:
                    for h in range(1, 29):
                        cold_paths.append(f"/v1/routes/{route_id}/forecast?level={level}&horizon={h}&history={history}")
                        cold_expect.append({"series": info.series_per_request[(route_id, level)], "horizon": h})

        env = {
            **os.environ,
            "ROUTECAST_VAR_DIR": str(var),
            "ROUTECAST_RELOAD_INTERVAL_S": "0",
            "ROUTECAST_ANSWER_CACHE_MB": str(CACHE_MB),
            **RATE_LIMIT_ENV,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        trivial = start_server("trivial", ["bench._trivial_app:app"], args.workers, env, tmp)
        servers.append(trivial)
        api = start_server("api", ["serving.app:create_app", "--factory"], args.workers, env, tmp)
        servers.append(api)
        wait_ready(trivial, "/ping")
        wait_ready(api, "/readyz")
        console.log(
            f"servers ready: trivial in {trivial.started_s:.1f} s, API in {api.started_s:.1f} s "
            f"(uvicorn {_uvicorn_stack()}; the idle one waits while the other is measured)"
        )

        base_spec = {"clients": args.clients, "seconds": args.seconds, "warmup": args.warmup}
        for round_ in range(1, args.rounds + 1):
            runs.append(
                run_load("trivial", round_, trivial, {**base_spec, "paths": ["/ping"], "tokens": None}, console)
            )
            runs.append(
                run_load(
                    "forecast",
                    round_,
                    api,
                    {**base_spec, "paths": paths, "tokens": tokens, "expect": expect},
                    console,
                )
            )
            if args.cold:
                cold_spec = {**base_spec, "paths": cold_paths, "tokens": tokens, "expect": cold_expect}
                runs.append(run_load("forecast-cold", round_, api, cold_spec, console))
    finally:
        for server in servers:
            server.stop()
    audit_lines = sum(f.read_bytes().count(b"\n") for f in (var / "audit").glob("*.jsonl"))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    trivial_runs = [r for r in runs if r.endpoint == "trivial"]
    forecast_runs = [r for r in runs if r.endpoint == "forecast"]
    rows: list[tuple[Summary, Summary | None]] = []
    if args.rounds > 1:
        for round_ in range(1, args.rounds + 1):
            t = summarise(f"trivial /ping (round {round_})", [r for r in trivial_runs if r.round == round_])
            f = summarise(f"forecast (round {round_})", [r for r in forecast_runs if r.round == round_])
            rows += [(t, None), (f, t)]
    trivial_all = summarise("trivial /ping" + (" (all rounds)" if args.rounds > 1 else ""), trivial_runs)
    forecast_all = summarise(
        "forecast /v1/routes/{id}/forecast" + (" (all rounds)" if args.rounds > 1 else ""), forecast_runs
    )
    rows += [(trivial_all, None), (forecast_all, trivial_all)]
    cold_runs = [r for r in runs if r.endpoint == "forecast-cold"]
    if cold_runs:
        rows.append((summarise("forecast, every answer made anew (no cache hit)", cold_runs), trivial_all))

    console.print(
        f"\n{cores} cores, load average before start {load_before[0]:.2f} (1 min) / {load_before[1]:.2f} (5 min); "
        f"uvicorn --workers {args.workers} ({_uvicorn_stack()}), {args.clients} keep-alive clients in one process "
        f"({runs[0].loop}), {args.warmup:g} s warm-up + {args.seconds:g} s measured per endpoint and round."
    )
    print_table(rows, console)

    ratio = forecast_all.rps / trivial_all.rps
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = forecast_all.p99 < TARGET_P99_MS
    errors = sum(r.non_200 for r in runs)
    bad = [b for r in forecast_runs for b in r.bad]
    checked = min(r.checked for r in forecast_runs)
    console.print(
        f"forecast / trivial throughput: {ratio:.2f} (target ≥ {TARGET_RATIO:.2f}): {'PASS' if ratio_ok else 'FAIL'}"
    )
    console.print(
        f"forecast p99 latency: {forecast_all.p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms): "
        f"{'PASS' if p99_ok else 'FAIL'}"
    )
    console.print(
        f"non-200 answers: {errors:,} ({'none' if not errors else _errors(runs)}); forecast answers checked: "
        f"{checked} of {len(paths)} distinct requests, {'all as expected' if not bad else 'BAD: ' + '; '.join(bad)}; "
        f"reconnects: {sum(r.reconnects for r in runs)}; audit records written by the API: {audit_lines:,}"
    )
    console.print(
        "Forecast requests: every route × level route|segment × horizon 7|14|28, one analyst token per client; the "
        "server caches each answer per release, so after the first pass (in the warm-up) all are cache hits. Rate "
        f"limit set to burst {RATE_LIMIT_ENV['ROUTECAST_RATE_LIMIT_BURST']}, "
        f"{RATE_LIMIT_ENV['ROUTECAST_RATE_LIMIT_PER_MINUTE']} a minute: the limiter still runs on every request, it "
        "just never refuses. Token check and audit log as deployed. server cores: CPU seconds of the server's "
        "processes / wall seconds; client CPU: the load generator's share of one core (100 %: it would be the "
        "bottleneck); other load: share of all cores used outside the benchmark."
    )
    passed = ratio_ok and p99_ok and not errors and not bad
    console.print(f"Result: {'PASS' if passed else 'FAIL'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cores": cores,
                    "load_average_before": load_before,
                    "workers": args.workers,
                    "clients": args.clients,
                    "seconds": args.seconds,
                    "summaries": [asdict(s) for s, _ in rows],
                    "ratio": ratio,
                    "pass": passed,
                    "errors": {f"{r.endpoint}-{r.round}": r.errors for r in runs},
                },
                indent=1,
            )
        )
    return 0 if passed else 1


def _errors(runs: list[Run]) -> str:
    parts = []
    for r in runs:
        if r.errors:
            codes = ", ".join(f"{k}: {v:,}" for k, v in r.errors.items())
            parts.append(f"{r.endpoint} round {r.round}: {codes}; first: {r.error_sample!r}")
    return "; ".join(parts)


def _uvicorn_stack() -> str:
    """What uvicorn's default ``--loop auto --http auto`` picks in this environment."""
    parts = []
    for module, name, fallback in (("uvloop", "uvloop", "asyncio"), ("httptools", "httptools", "h11")):
        try:
            __import__(module)
            parts.append(name)
        except ImportError:
            parts.append(fallback)
    return " + ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
