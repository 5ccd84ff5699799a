"""The load generator of bench/api.py, run in its own process: ``python bench/_api_load.py < spec.json > result.json``.

``clients`` HTTP/1.1 keep-alive connections to 127.0.0.1, each a closed loop (send a GET, read the whole answer,
send the next), on one asyncio event loop (uvloop when installed) with ``asyncio.Protocol`` callbacks and a minimal
response parser (status line, ``content-length``; anything else is counted as an error): much cheaper per request
than an HTTP client library, so that the client takes as little of the machine as possible. Connection ``i`` uses
token ``i`` (if any) and walks the request list from position ``i``.

For ``warmup`` seconds nothing is recorded; then for ``seconds`` every answer completed in the window counts for
throughput, and the latency (send to last body byte) of those sent in the window is kept. CPU seconds of this
process, of the server's process tree and of the whole benchmark tree (the parent ``root_pid`` and everything below
it) are read from /proc at both ends of the window, with the machine's busy CPU seconds: what is left is other load.
The first 200 answer of each distinct request is checked against ``expect`` (series count and horizon) after the run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._procs import busy_cpu_seconds, own_cpu_seconds, process_tree  # noqa: E402

perf = time.perf_counter


class Load:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.recording = False
        self.stopping = False
        self.window = (0.0, 0.0)
        self.completed = 0
        self.latencies: list[float] = []
        self.bytes = 0
        self.errors: dict[str, int] = {}
        self.error_sample: str | None = None
        self.first_ok: dict[int, bytes] = {}
        self.reconnects = 0


class Conn(asyncio.Protocol):
    def __init__(self, load: Load, requests: list[bytes], start: int, done: asyncio.Future) -> None:
        self.load, self.requests, self.i, self.done = load, requests, start, done
        self.buf = bytearray()
        self.need = -1  # total bytes of the answer being read (head + body), -1 until the head is parsed
        self.status = 0
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        if self.load.stopping:
            self.transport.close()
            return
        self.sent = perf()
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at < 0:  # chunked or close-delimited: not what these endpoints send
                    self.fail("no content-length")
                    return
                eol = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : eol if eol >= 0 else len(head)])
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            self.finish(bytes(buf[: self.need]))
            del buf[: self.need]
            self.need = -1
            if not buf:
                self.send()
                return

    def finish(self, answer: bytes) -> None:
        now = perf()
        load = self.load
        index = (self.i - 1) % len(self.requests)
        if self.status != 200:
            key = str(self.status)
            load.errors[key] = load.errors.get(key, 0) + 1
            if load.error_sample is None:
                load.error_sample = answer[:600].decode("latin-1")
        elif index not in load.first_ok:
            load.first_ok[index] = answer
        if load.recording:
            start, end = load.window
            if now < end:
                load.completed += 1
                load.bytes += len(answer)
                if self.sent >= start:
                    load.latencies.append(now - self.sent)

    def fail(self, why: str) -> None:
        self.load.errors[why] = self.load.errors.get(why, 0) + 1
        self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(self.i)


def _cpu(pids: list[int]) -> float:
    return sum(c for c in (own_cpu_seconds(p) for p in pids) if c is not None)


async def run(spec: dict) -> dict:
    load = Load(spec)
    loop = asyncio.get_running_loop()
    host, port = "127.0.0.1", spec["port"]
    host_header = f"Host: {host}:{port}\r\n"
    tokens = spec.get("tokens") or [None] * spec["clients"]
    per_client = []
    for i in range(spec["clients"]):
        auth = f"Authorization: Bearer {tokens[i]}\r\n" if tokens[i] else ""
        per_client.append(
            [
                f"GET {path} HTTP/1.1\r\n{host_header}{auth}Accept: application/json\r\n"
                f"User-Agent: routecast-bench\r\n\r\n".encode()
                for path in spec["paths"]
            ]
        )

    async def client(i: int) -> None:
        # Clients start spread over the list, not at neighbouring entries: they would soon ask for the same path
        # together, and a mix meant to make every answer anew would measure one answer made for many clients.
        start = i * len(spec["paths"]) // spec["clients"]
        while not load.stopping:
            done = loop.create_future()
            protocol = Conn(load, per_client[i], start, done)
            try:
                await loop.create_connection(lambda p=protocol: p, host, port)
            except OSError as exc:
                load.errors[f"connect: {exc.strerror}"] = load.errors.get(f"connect: {exc.strerror}", 0) + 1
                await asyncio.sleep(0.05)
                continue
            start = await done
            if not load.stopping:
                load.reconnects += 1

    tasks = [asyncio.create_task(client(i)) for i in range(spec["clients"])]
    # During the warm-up: find the processes to account for (a /proc scan stalls the loop; not in the window).
    root_pids = [p.pid for p in process_tree(spec["root_pid"])]
    server_pids = [p.pid for p in process_tree(spec["server_pid"])]
    await asyncio.sleep(spec["warmup"])

    gc.collect()
    gc.disable()  # the client makes no reference cycles; a collection would only add pauses to its latencies
    cpu0, server0, tree0, busy0 = time.process_time(), _cpu(server_pids), _cpu(root_pids), busy_cpu_seconds()
    t0 = perf()
    load.window = (t0, t0 + spec["seconds"])
    load.recording = True
    await asyncio.sleep(spec["seconds"])
    wall = perf() - t0
    cpu1, server1, tree1, busy1 = time.process_time(), _cpu(server_pids), _cpu(root_pids), busy_cpu_seconds()
    load.recording = False
    load.stopping = True
    gc.enable()
    await asyncio.wait(tasks, timeout=10)

    bad = check(load, spec)
    cores = os.cpu_count() or 1
    return {
        "seconds": wall,
        "completed": load.completed,
        "latencies": load.latencies,
        "bytes": load.bytes,
        "errors": load.errors,
        "error_sample": load.error_sample,
        "reconnects": load.reconnects,
        "client_cpu": cpu1 - cpu0,
        "server_cpu": server1 - server0,
        "server_processes": len(server_pids),
        "other_load": max((busy1 - busy0) - (tree1 - tree0), 0.0) / (wall * cores),
        "checked": len(load.first_ok),
        "distinct": len(spec["paths"]),
        "bad": bad,
    }


def check(load: Load, spec: dict) -> list[str]:
    """The first 200 answer of each request: JSON with the expected number of series and forecast points."""
    expect = spec.get("expect")
    bad = []
    for index, answer in sorted(load.first_ok.items()):
        body = json.loads(answer[answer.index(b"\r\n\r\n") + 4 :])
        if expect is None:
            continue
        want = expect[index]
        series = body.get("series", [])
        lengths = {len(s["forecast"]) for s in series}
        if len(series) != want["series"] or lengths != {want["horizon"]}:
            bad.append(f"{spec['paths'][index]}: {len(series)} series, forecast lengths {sorted(lengths)}")
    missing = len(spec["paths"]) - len(load.first_ok)
    if missing:
        bad.append(f"{missing} of {len(spec['paths'])} requests never answered 200")
    return bad


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop

        result = uvloop.run(run(spec))
        result["loop"] = "uvloop"
    except ImportError:
        result = asyncio.run(run(spec))
        result["loop"] = "asyncio"
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
