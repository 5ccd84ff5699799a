"""Memory and CPU of a process tree, read from /proc (Linux only; no psutil needed).

``TreeSampler`` polls a root process and its descendants in a background thread and keeps, per role, the peak
RSS: the root itself (``driver``), Java processes (the Spark JVM) and Python processes below a JVM (PySpark's
daemon and UDF workers). A process's own high-water mark (``VmHWM``) is read at every poll, so the peak of a
single process is exact as long as it is polled at least once before it exits; sums over several processes
(the workers, the whole tree) are the largest sum seen at a poll.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


@dataclass
class _Proc:
    pid: int
    ppid: int
    comm: str
    rss: int  # bytes
    hwm: int  # bytes, the process's peak RSS so far
    cpu: float  # seconds: utime + stime + cutime + cstime (reaped children included)


def _read(pid: int) -> _Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: the fields after it start after the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()
    ppid = int(rest[1])
    cpu = sum(int(x) for x in rest[11:15]) / TICK
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return _Proc(pid, ppid, comm, rss, hwm, cpu)


def process_tree(root: int) -> list[_Proc]:
    """The live process ``root`` and all its live descendants."""
    procs = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            p = _read(int(entry.name))
            if p is not None:
                procs[p.pid] = p
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(procs[pid])
            todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by ``root`` (default: this process) and its descendants, reaped ones included."""
    return sum(p.cpu for p in process_tree(root or os.getpid()))


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def _role(p: _Proc, root: int, jvms: set[int]) -> str:
    if p.pid == root:
        return "driver"
    if p.comm == "java":
        return "jvm"
    if p.ppid in jvms or "python" in p.comm or p.comm.startswith("pyspark"):
        return "workers"
    return "other"


@dataclass
class TreePeaks:
    """Peak RSS in bytes per role, the peak of the whole tree, and the JVM's command line memory flags."""

    roles: dict[str, int] = field(default_factory=dict)
    total: int = 0
    most_workers: int = 0  # the most Python worker processes (daemons included) alive at one poll
    jvm_flags: list[str] = field(default_factory=list)

    def mib(self, role: str) -> float | None:
        return self.roles[role] / MIB if role in self.roles else None


class TreeSampler:
    """Polls the tree under ``root`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.peaks = TreePeaks()
        self._jvm_hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> TreePeaks:
        self._stop.set()
        self._thread.join()
        return self.peaks

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        tree = process_tree(self.root)
        jvms = {p.pid for p in tree if p.comm == "java"}
        sums: dict[str, int] = {}
        for p in tree:
            role = _role(p, self.root, jvms)
            if role == "workers":  # several processes at once: the peak of their sum
                sums[role] = sums.get(role, 0) + p.rss
            else:  # one process: its own high-water mark
                self.peaks.roles[role] = max(self.peaks.roles.get(role, 0), p.hwm)
            if p.comm == "java" and p.hwm >= self._jvm_hwm:  # the Spark JVM, not spark-class's small launcher
                self._jvm_hwm = p.hwm
                self.peaks.jvm_flags = _jvm_memory_flags(p.pid) or self.peaks.jvm_flags
        workers = sum(1 for p in tree if _role(p, self.root, jvms) == "workers")
        self.peaks.most_workers = max(self.peaks.most_workers, workers)
        for role, total in sums.items():
            self.peaks.roles[role] = max(self.peaks.roles.get(role, 0), total)
        self.peaks.total = max(self.peaks.total, sum(p.rss for p in tree))


def _jvm_memory_flags(pid: int) -> list[str]:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode() for a in args if a.startswith((b"-Xmx", b"-Xms", b"-XX:MaxDirect"))]


def load_average() -> float:
    return os.getloadavg()[0]


def wait_quiet(max_load: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until the 1-minute load average is at most ``max_load``; return the load."""
    deadline = time.monotonic() + timeout
    while load_average() > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()


def own_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process itself (not its reaped children), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may hold spaces: the fields start after the last ')'
    return (int(fields[11]) + int(fields[12])) / TICK
