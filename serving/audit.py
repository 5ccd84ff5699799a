"""The audit log: who asked the API for what, one JSON line per HTTP request, chained with a keyed hash (HMAC).

Files live under ``settings.audit_path``, one per UTC day and per process: ``audit-YYYYMMDD-<pid>.jsonl`` (several
workers never write to the same file; ``audit-YYYYMMDD-<pid>-<n>.jsonl`` when that name cannot be continued, see
below). They are only ever opened for appending, and this module has no function that rewrites or deletes a record.

**The chain.** Each line starts with ``prev``: the HMAC-SHA256 (hex) of the previous line of the same file (without
its newline) under the *audit key*; the first line's ``prev`` is the HMAC of the file's name. The audit key is
``ROUTECAST_AUDIT_KEY``, or else the key file ``<var_dir>/keys/audit-hmac.key`` (32 random bytes, created with mode
0600 on first use). It is not the token signing key: whoever can issue tokens need not be able to rewrite the log.
A key shorter than 32 bytes, of few distinct bytes or one repeated pattern, equal to the token key, or a key file
that group or others may read or write, is refused (``AuditKeyError``; the API does not start). Without the key,
nobody can edit, insert, reorder or remove a line, re-chain a file (with plain SHA-256 or any other key), start a
forged file or rename one so that ``verify`` does not report it.

**The anchor.** A chain cannot show that its *last* lines were removed or that its last line was edited, nor that a
whole file was removed. So the log also writes an anchor file (``<audit_dir>/anchor.json``, or
``ROUTECAST_AUDIT_ANCHOR_FILE``): for every file it has written, the number of lines, the size and the HMAC of the
latest line, signed as a whole with the audit key. It is rewritten atomically (temporary file, fsync, rename; mode
0640) when a file gets its first line, at most ``audit_anchor_interval_s`` (60 s) after the last time while records
are written, and by ``close()`` at shutdown; several workers merge their entries under a lock. ``verify`` against it
reports a file removed, cut at its end or rewritten up to its anchored line. What it cannot see: records written
after the anchor was last written when the process dies without ``close()`` (at most a minute's), and an anchor
replaced by an older copy of itself — so operators should copy the anchor elsewhere (another host, write-once
storage) regularly and verify against the copy: ``routecast audit verify --anchor COPY``. A process that restarts
with the same pid on the same day continues its file only when the file still holds its anchored line; otherwise
(the file was cut, rewritten or removed while the API was down) it starts ``...-<pid>-1.jsonl`` and leaves the
evidence, and the anchor entry, as they are. An anchor whose signature does not verify is never overwritten.

A process that owns the files can still destroy them: in production also make the directory append-only at the OS
level (Linux: ``chattr +a``, by a root helper, never the API itself) or ship the lines to write-once storage.

**Failing closed.** ``AuditMiddleware`` (pure ASGI, not ``BaseHTTPMiddleware``, which is slow) writes the record when
the answer's status is known — when the app sends the start of its answer — and only then lets the answer leave.
When the record cannot be written, the client gets 503 ("the audit log cannot be written; the request was not
served") and none of the data; ``ROUTECAST_AUDIT_FAIL_OPEN=true`` serves it anyway and logs the error. A record
holds: ts (UTC, ISO 8601, when the request arrived), request_id (uuid4 hex, also sent back as ``X-Request-ID``),
client (the peer address, ``scope["client"]``; null when unknown), subject, role and token_id (from
``scope["routecast.principal"]``, set by ``serving.auth``; null when anonymous), method, path, endpoint (the route
template, e.g. ``/v1/routes/{route_id}/forecast``), params (path parameters, those the handler recorded with
``record_param`` such as a created scenario's id, and query parameters, each a list of strings),
status, rows (set by the handler with ``record_rows`` before it returns), ms (until the status was known). What a
request can make us write is bounded: one line is at most ``MAX_LINE_BYTES`` (4 KiB) whatever the path and query.

**Anonymous floods.** Requests to ``/v1/`` with no ``Authorization`` header at all (they can only be refused) are
limited per client address by ``AnonymousLimiter`` (``ROUTECAST_ANON_RATE_LIMIT_PER_MINUTE``, ``_BURST``): over it,
429 with ``Retry-After``, still audited. Behind a reverse proxy the address is the proxy's unless uvicorn is told to
trust its forwarding headers (``--proxy-headers --forwarded-allow-ips``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import secrets
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.keys import ADVICE, KEY_BYTES, ExposedKeyFile, create_key_file, key_weakness, read_private_key_file
from serving.settings import ServingSettings

log = logging.getLogger("routecast.audit")

EPOCH = dt.date(1970, 1, 1)
FILE_RE = re.compile(r"^audit-(\d{8})-(\d+)(?:-(\d+))?\.jsonl$")
ANCHOR_NAME = "anchor.json"
PRINCIPAL_SCOPE_KEY = "routecast.principal"  # = serving.auth.PRINCIPAL_SCOPE_KEY (no import: audit needs no auth)
ROWS_SCOPE_KEY = "routecast.rows"
PARAMS_SCOPE_KEY = "routecast.params"  # parameters the handler recorded (e.g. the id of what it created)
REQUEST_ID_SCOPE_KEY = "routecast.request_id"

# Domain separation: a line's HMAC can never be taken for a file's genesis or an anchor's signature.
GENESIS_CONTEXT = b"routecast-audit-genesis-v1\n"
ANCHOR_CONTEXT = b"routecast-audit-anchor-v1\n"
ANCHOR_VERSION = 1
ANCHOR_MODE = 0o640
FILE_MODE = 0o640

# Bounds on what one request can make us write (the path and the query string are the client's to choose). Sizes
# are of the JSON text as written (ASCII, escapes included); all of them together stay under MAX_LINE_BYTES.
MAX_LINE_BYTES = 4096
MAX_PATH_BYTES = 512
MAX_FIELD_BYTES = 128  # client, subject, token id, endpoint, method
MAX_NAME_BYTES = 64
MAX_VALUE_BYTES = 128
MAX_PARAMS_BYTES = 2048
MAX_PARAMS = 32
MAX_VALUES = 16
MORE = "…"  # marks a value cut short, and (as a parameter name) what was left out
MAX_TS = "\uffff"  # sorts after any ISO timestamp
MAX_PROBLEMS_PER_FILE = 20

NOT_AUDITED_DETAIL = "the audit log cannot be written; the request was not served"


class AuditKeyError(ValueError):
    """The audit key is unusable (weak, exposed, missing): a deployment error, with what to do about it."""


class AnchorError(ValueError):
    """An anchor file that cannot be trusted (not an anchor, or its signature does not verify)."""


# -------------------------------------------------------------------------------------------------------- the key


def audit_key(settings: ServingSettings, *, create: bool = True) -> bytes:
    """The audit HMAC key: ``ROUTECAST_AUDIT_KEY``, else the key file (created atomically, mode 0600, when missing
    and ``create``; ``verify`` passes False so that it never makes a new key to check old lines with).

    Raises ``AuditKeyError`` for a weak key, a key file group or others may read or write, a missing key file
    (``create=False``), or a key equal to the token signing key.
    """
    if settings.audit_key is not None:
        key, where = settings.audit_key.get_secret_value().encode(), "ROUTECAST_AUDIT_KEY"
    else:
        key, where = _read_key_file(settings.audit_key_path, create), str(settings.audit_key_path)
    check_audit_key(key, where)
    if key in _token_keys(settings):
        raise AuditKeyError(
            f"{where}: the audit key is the token signing key; use a key of its own (`openssl rand -hex 32`), so "
            "that whoever can issue tokens cannot also rewrite the audit log"
        )
    return key


def check_audit_key(key: bytes, where: str) -> None:
    """Refuse (``AuditKeyError``) a key shorter than 32 bytes, of fewer than 10 distinct bytes, or one pattern
    repeated: not a random key."""
    if len(key) < KEY_BYTES:
        raise AuditKeyError(f"{where}: the audit key has {len(key)} bytes; it needs at least {KEY_BYTES}; {ADVICE}")
    weakness = key_weakness(key, "audit key")
    if weakness:
        raise AuditKeyError(f"{where}: {weakness}")


def _token_keys(settings: ServingSettings) -> set[bytes]:
    """The token signing key(s) this deployment may use, as far as they can be read without creating anything."""
    keys = set()
    if settings.jwt_secret is not None:
        keys.add(settings.jwt_secret.get_secret_value().encode())
    try:
        keys.add(settings.key_file.read_bytes())
    except OSError:
        pass  # not created yet, or not ours to read: it is then no audit key either
    return keys


def _read_key_file(path: Path, create: bool) -> bytes:
    try:
        return read_private_key_file(path)
    except FileNotFoundError:
        if not create:
            raise AuditKeyError(
                f"{path}: no audit key file; set ROUTECAST_AUDIT_KEY or ROUTECAST_AUDIT_KEY_FILE to the key the API "
                "writes with (the API creates this file on its first start)"
            ) from None
        create_key_file(path)
        return _read_key_file(path, create=False)
    except ExposedKeyFile as exc:
        if not stat.S_ISREG(exc.mode):
            raise AuditKeyError(f"{path}: the audit key file is not a regular file") from None
        raise AuditKeyError(
            f"{path}: the audit key file may be read or written by group or others (mode "
            f"{stat.S_IMODE(exc.mode):04o}); whoever reads it can rewrite the audit log undetected: `chmod 600 {path}`"
        ) from None
    except OSError as exc:
        raise AuditKeyError(f"{path}: the audit key file cannot be read ({exc.strerror})") from None


def _mac(key: bytes, line: bytes) -> str:
    return hmac.digest(key, line, "sha256").hex()


def _genesis(key: bytes, name: str) -> str:
    """The ``prev`` of a file's first line: binds the file's name to the key (no forged or renamed file verifies)."""
    return _mac(key, GENESIS_CONTEXT + name.encode())


def _file_name(day: dt.date, pid: int, n: int = 0) -> str:
    return f"audit-{day:%Y%m%d}-{pid}.jsonl" if n == 0 else f"audit-{day:%Y%m%d}-{pid}-{n}.jsonl"


# ----------------------------------------------------------------------------------------------------- the anchor


@dataclass(frozen=True)
class FileAnchor:
    """A file's state when it was anchored: its first ``lines`` lines are ``size`` bytes, the last with HMAC
    ``head``."""

    lines: int
    size: int
    head: str


@dataclass(frozen=True)
class Anchor:
    """An anchor file's content, its signature verified."""

    files: dict[str, FileAnchor]
    updated: str


def _anchor_payload(files: Mapping[str, FileAnchor], updated: str) -> dict[str, Any]:
    return {
        "version": ANCHOR_VERSION,
        "updated": updated,
        "files": {n: {"lines": a.lines, "size": a.size, "head": a.head} for n, a in sorted(files.items())},
    }


def _anchor_mac(key: bytes, payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return _mac(key, ANCHOR_CONTEXT + canonical)


def read_anchor(path: Path | str, key: bytes) -> Anchor:
    """The anchor file at ``path``, once its signature verifies under ``key``.

    Raises FileNotFoundError when there is none, ``AnchorError`` when it is not an anchor or was altered (or was
    signed with another key).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_bytes())
    except ValueError:
        raise AnchorError(f"{path}: the anchor file is not JSON (it was altered or cut)") from None
    if not isinstance(document, dict) or document.get("version") != ANCHOR_VERSION:
        raise AnchorError(f"{path}: not an audit anchor file (version {ANCHOR_VERSION})")
    mac = document.pop("mac", None)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _anchor_mac(key, document)):
        raise AnchorError(f"{path}: the anchor's signature does not verify (it was altered, or made with another key)")
    try:
        files = {
            str(name): FileAnchor(int(e["lines"]), int(e["size"]), str(e["head"]))
            for name, e in document["files"].items()
        }
        return Anchor(files=files, updated=str(document["updated"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise AnchorError(f"{path}: the anchor file is malformed") from None


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """``path`` holds ``data`` or its old content, never a mix: temporary file, fsync, rename, fsync of the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)


def _merge_anchor(path: Path, key: bytes, entries: Mapping[str, FileAnchor]) -> None:
    """Add ``entries`` to the anchor file (other processes' entries kept; a file's entry never goes back to fewer
    lines). An anchor that does not verify raises ``AnchorError`` and is left as it is: it is evidence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, ANCHOR_MODE)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the workers of one API share the anchor: read, merge, write in turn
        try:
            files = dict(read_anchor(path, key).files)
        except FileNotFoundError:
            files = {}
        for name, entry in entries.items():
            old = files.get(name)
            if old is None or entry.lines >= old.lines:
                files[name] = entry
        payload = _anchor_payload(files, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        document = {**payload, "mac": _anchor_mac(key, payload)}
        _write_atomically(path, (json.dumps(document, indent=1) + "\n").encode(), ANCHOR_MODE)
    finally:
        os.close(lock)  # releases the lock


# ---------------------------------------------------------------------------------------------------- the writer


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _line_ending_at(f: Any, end: int) -> bytes | None:
    """The line whose newline is the byte at ``end - 1`` of ``f`` (without it); None if that byte is no newline."""
    f.seek(end - 1)
    if f.read(1) != b"\n":
        return None
    chunk, pos = b"", end - 1
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step) + chunk  # the bytes from pos up to (not including) that newline
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return chunk[cut + 1 :]
    return chunk


@dataclass
class _FileState:
    lines: int
    size: int
    prev: str
    cut: bool  # its last line has no newline (a crash cut it): one is written before the next line


def _resume(path: Path, key: bytes, anchor: FileAnchor | None) -> _FileState | None:
    """Where to continue ``path``'s chain; None when it must not be continued because it no longer holds its
    anchored line (cut, rewritten or removed since): writing on would hide that from the anchor."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None if anchor is not None else _FileState(0, 0, _genesis(key, path.name), False)
    with f:
        state = _FileState(0, 0, _genesis(key, path.name), False)
        if anchor is not None:
            if anchor.lines < 1 or anchor.size < 1 or os.fstat(f.fileno()).st_size < anchor.size:
                return None
            line = _line_ending_at(f, anchor.size)
            if line is None or not hmac.compare_digest(_mac(key, line), anchor.head):
                return None
            state = _FileState(anchor.lines, anchor.size, anchor.head, False)
        f.seek(state.size)
        for raw in f:  # the lines after the anchored one (all of them without an anchor)
            line = raw[:-1] if raw.endswith(b"\n") else raw
            state.cut = not raw.endswith(b"\n")
            state.lines += 1
            state.size += len(raw)
            state.prev = _mac(key, line)
        return state


class AuditLog:
    """Appends records to today's file of this process under ``directory`` (created on the first record), chained
    under ``key`` and anchored in ``anchor_file`` (default ``<directory>/anchor.json``).

    ``anchor_interval_s`` is the longest time the anchor lags behind the records while they are written; ``clock``
    (monotonic seconds) is for tests. Build it with ``AuditLog.from_settings`` in the API.
    """

    def __init__(
        self,
        directory: Path | str,
        key: bytes,
        *,
        anchor_file: Path | str | None = None,
        anchor_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_audit_key(key, "the audit key")
        if anchor_interval_s <= 0:
            raise ValueError("anchor_interval_s must be > 0")
        self.directory = Path(directory)
        self.anchor_file = Path(anchor_file) if anchor_file is not None else self.directory / ANCHOR_NAME
        self._key = key
        self._interval = anchor_interval_s
        self._clock = clock
        self._lock = threading.Lock()  # the open file and its chain
        self._anchor_lock = threading.Lock()  # anchor writes, one at a time and in order
        self._fd: int | None = None
        self._file_key: tuple[int, int] | None = None  # (day number, pid) of the open file
        self._pid = os.getpid()
        self._path: Path | None = None
        self._state = _FileState(0, 0, "", False)
        self._heads: dict[str, FileAnchor] = {}  # every file this process wrote, at its latest line
        self._announced: set[str] = set()  # files whose entry the anchor was (at least tried to be) given
        self._next_anchor = -math.inf

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> AuditLog:
        """The API's log: ``settings.audit_path``, its key (``audit_key``: raises ``AuditKeyError`` for a bad one)
        and its anchor file."""
        return cls(
            settings.audit_path,
            audit_key(settings),
            anchor_file=settings.audit_anchor_path,
            anchor_interval_s=settings.audit_anchor_interval_s,
        )

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line chained to the previous one (thread-safe; written, not fsynced).

        Values JSON cannot hold are written as ``str``; the key ``prev`` is the chain's own. Raises OSError when
        the line cannot be written (nothing of it is counted then; the next call reopens the file). A failure to
        write the anchor is logged, not raised: the record itself is written.
        """
        if "prev" in record:
            raise ValueError("'prev' is set by the audit log itself")
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str)
        with self._lock:
            fd = self._current_file()
            st = self._state
            line = f'{{"prev":"{st.prev}",{body[1:]}' if body != "{}" else f'{{"prev":"{st.prev}"}}'
            data = line.encode("ascii")
            try:
                _write_all(fd, b"\n" + data + b"\n" if st.cut else data + b"\n")
            except BaseException:
                self._close_file()  # a part of the line may be written: reopening ends it and goes on after it
                raise
            st.lines += 1
            st.size += len(data) + 1 + st.cut
            st.cut = False
            st.prev = _mac(self._key, data)
            name = self._path.name if self._path else ""
            self._heads[name] = FileAnchor(st.lines, st.size, st.prev)
            due = name not in self._announced or self._clock() >= self._next_anchor
        if due:
            self.flush_anchor()

    def flush_anchor(self) -> None:
        """Write the heads of this process's files to the anchor file now (no-op before the first record).
        Errors are logged: an anchor that cannot be written, or that does not verify and so is kept as it is."""
        with self._anchor_lock:
            with self._lock:
                heads = dict(self._heads)
                self._announced.update(heads)
                self._next_anchor = self._clock() + self._interval
            if not heads:
                return
            try:
                _merge_anchor(self.anchor_file, self._key, heads)
            except AnchorError as exc:
                log.error("audit anchor not updated: %s; run `routecast audit verify`", exc)
            except OSError:
                log.exception("audit anchor %s cannot be written", self.anchor_file)

    def close(self) -> None:
        """Write the anchor and close the file (at shutdown); a later ``append`` opens it again."""
        self.flush_anchor()
        with self._lock:
            self._close_file()

    @property
    def path(self) -> Path | None:
        """The file being written, if any."""
        return self._path if self._fd is not None else None

    @property
    def head(self) -> tuple[str, str] | None:
        """(file name, HMAC of its latest line); None before the first record."""
        with self._lock:
            return (self._path.name, self._state.prev) if self._path is not None and self._state.lines else None

    def _close_file(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass  # nothing buffered: every line was written with os.write
        self._fd, self._file_key = None, None

    def _current_file(self) -> int:
        key = (int(time.time() // 86400), os.getpid())  # a new UTC day, or a forked child, starts a new file
        if self._fd is not None and key == self._file_key:
            return self._fd
        if self._pid != key[1]:
            self._heads.clear()  # a forked child: the parent's files are the parent's to anchor
            self._announced.clear()
            self._pid = key[1]
        self._close_file()
        day = EPOCH + dt.timedelta(days=key[0])
        self.directory.mkdir(parents=True, exist_ok=True)
        anchored = self._anchored_files()
        for n in itertools.count():
            path = self.directory / _file_name(day, key[1], n)
            state = _resume(path, self._key, anchored.get(path.name))
            if state is not None:
                break
            log.error(
                "audit file %s no longer holds its anchored line (cut, rewritten or removed while the API was "
                "down): left as evidence, writing on in a new file; run `routecast audit verify`",
                path.name,
            )
        # Append only (O_APPEND: every write goes to the end, whatever else has the file open), never readable by all.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._file_key, self._path, self._state = key, path, state
        return self._fd

    def _anchored_files(self) -> dict[str, FileAnchor]:
        try:
            return read_anchor(self.anchor_file, self._key).files
        except FileNotFoundError:
            return {}
        except (AnchorError, OSError) as exc:
            log.error("audit anchor unusable, files are continued unchecked: %s", exc)
            return {}


# ---------------------------------------------------------------------------------------------------- middleware


def record_rows(request: Request, n: int) -> None:
    """Record in the audit log how many rows (or features) the response holds; call it before returning."""
    request.scope[ROWS_SCOPE_KEY] = int(n)


def record_param(request: Request, name: str, value: str) -> None:
    """Record in the audit log a parameter the request did not send but the answer made, e.g. the id of what it
    created; listed in ``params`` after the path parameters. Call it before returning."""
    request.scope.setdefault(PARAMS_SCOPE_KEY, {})[name] = str(value)


def _own_params(scope: Scope) -> list[tuple[str, str]]:
    """The path parameters, then those the handler recorded."""
    pairs = [(str(k), str(v)) for k, v in (scope.get("path_params") or {}).items()]
    return pairs + [(str(k), str(v)) for k, v in (scope.get(PARAMS_SCOPE_KEY) or {}).items()]


def _json_size(ch: str) -> int:
    if " " <= ch <= "~":
        return 2 if ch in '"\\' else 1
    if ch in "\b\f\n\r\t":
        return 2
    return 12 if ord(ch) > 0xFFFF else 6  # \uXXXX, or a surrogate pair of them


def _clip(text: str, limit: int) -> str:
    """``text``, cut so that it takes at most ``limit`` bytes in a record (JSON, ASCII); ``…`` marks a cut."""
    if len(text) <= limit and _json_size_of(text) <= limit:
        return text
    out, size, budget = [], 0, limit - _json_size(MORE)
    for ch in text:  # stops within `limit` characters, however long the text
        size += _json_size(ch)
        if size > budget:
            break
        out.append(ch)
    return "".join(out) + MORE


def _opt_clip(value: Any, limit: int = MAX_FIELD_BYTES) -> str | None:
    return None if value is None else _clip(str(value), limit)


# Printable ASCII but for the quote and the backslash: JSON writes such text as it is, one byte a character.
_PLAIN = re.compile(r"[ !#-\[\]-~]*")


def _params(scope: Scope) -> dict[str, list[str]]:
    """Path then query parameters, within MAX_PARAMS_BYTES; what is left out is counted under the name ``…``."""
    plain = _plain_params(scope)
    return plain if plain is not None else _bounded_params(scope)


def _plain_params(scope: Scope) -> dict[str, list[str]] | None:
    """``_bounded_params`` for the usual request, cheaply: a few short plain parameters, no percent-escapes, so that
    no bound can bite and nothing needs measuring. None for anything else (``_bounded_params`` decides then)."""
    query = scope.get("query_string", b"")
    if len(query) > MAX_PARAMS_BYTES // 2:
        return None
    text = query.decode("latin-1")
    if "%" in text or not _PLAIN.fullmatch(text):
        return None
    pairs = _own_params(scope)
    pieces = (piece.partition("=") for piece in text.split("&") if piece)
    pairs += [(name.replace("+", " "), value.replace("+", " ")) for name, _, value in pieces]
    if len(pairs) > min(MAX_PARAMS, MAX_VALUES):
        return None
    params: dict[str, list[str]] = {}
    cost = 0
    for name, value in pairs:
        if len(name) > MAX_NAME_BYTES or len(value) > MAX_VALUE_BYTES:
            return None
        if not (_PLAIN.fullmatch(name) and _PLAIN.fullmatch(value)):
            return None
        values = params.get(name)
        cost += len(value) + 3 + (0 if values is not None else len(name) + 6)
        params.setdefault(name, []).append(value)
    return params if cost <= MAX_PARAMS_BYTES - 64 else None


def _bounded_params(scope: Scope) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    budget, left_out = MAX_PARAMS_BYTES - 64, 0  # 64: room for the count of what was left out
    pairs: Iterable[tuple[str, str]] = _own_params(scope)
    query = scope.get("query_string", b"").decode("latin-1")
    pieces = (p.partition("=") for p in query.split("&") if p)
    # A piece is cut before it is decoded: a parameter of a megabyte costs no more than one of a line.
    cap = 4 * max(MAX_NAME_BYTES, MAX_VALUE_BYTES)
    decoded = ((unquote_plus(n[:cap], errors="replace"), unquote_plus(v[:cap], errors="replace")) for n, _, v in pieces)
    for name, value in itertools.chain(pairs, decoded):
        name, value = _clip(name, MAX_NAME_BYTES), _clip(value, MAX_VALUE_BYTES)
        values = params.get(name)
        cost = _json_size_of(value) + 3 + (0 if values is not None else _json_size_of(name) + 6)
        if cost > budget or (values is None and len(params) >= MAX_PARAMS) or (values and len(values) >= MAX_VALUES):
            left_out += 1
            continue
        budget -= cost
        params.setdefault(name, []).append(value)
    if left_out:
        params[MORE] = [f"{left_out} more not recorded"]
    return params


def _json_size_of(text: str) -> int:
    """Bytes ``text`` takes in a record: as json.dumps(ensure_ascii=True) writes it (in C), less its quotes."""
    return len(encode_basestring_ascii(text)) - 2


def _client_key(host: str | None) -> str:
    """The bucket of a client address: an IPv6 client is its /64 (one subscriber's usual allocation)."""
    if host is None:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AnonymousLimiter:
    """Token buckets keyed by client address for requests without a token: ``burst`` at once, refilled at
    ``per_minute`` / 60 per second. Buckets full again are dropped; while ``max_clients`` buckets are live, a new
    address is refused until some fill up (anonymous ``/v1`` requests can only be refused anyway). ``clock``
    (monotonic seconds) is for tests."""

    PRUNE_EVERY_S = 30.0

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.per_minute, self.burst, self.max_clients = per_minute, burst, max_clients
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # client key -> [tokens, last refill]
        self._lock = threading.Lock()
        self._next_prune = -math.inf

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> AnonymousLimiter:
        """The API's limiter: ``anon_rate_limit_per_minute`` and ``anon_rate_limit_burst``."""
        return cls(settings.anon_rate_limit_per_minute, settings.anon_rate_limit_burst)

    def take(self, host: str | None) -> float:
        """Take one request from ``host``'s bucket: 0.0 when allowed, else the seconds until one is available."""
        rate, capacity, now = self.per_minute / 60.0, float(self.burst), self._clock()
        key = _client_key(host)
        with self._lock:
            if now >= self._next_prune:
                full_after = capacity / rate
                self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
                self._next_prune = now + self.PRUNE_EVERY_S
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_clients:
                    return 1.0 / rate
                self._buckets[key] = [capacity - 1.0, now]
                return 0.0
            tokens = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / rate

    def __len__(self) -> int:
        return len(self._buckets)


def _json_answer(status: int, detail: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> list[Message]:
    """The messages of a JSON answer ``{"detail": detail}`` made here, not by the app."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class AuditMiddleware:
    """Pure ASGI middleware writing one audit record per HTTP request before its answer leaves:
    ``app.add_middleware(AuditMiddleware, log=AuditLog.from_settings(settings), fail_open=False,
    anonymous_limit=AnonymousLimiter.from_settings(settings))``.

    ``fail_open``: when the record cannot be written, serve anyway (and log the error) instead of answering 503.
    ``anonymous_limit``: the limiter of ``/v1/`` requests with no ``Authorization`` header (None: unlimited).
    """

    def __init__(
        self, app: ASGIApp, log: AuditLog, fail_open: bool = False, anonymous_limit: AnonymousLimiter | None = None
    ) -> None:
        self.app = app
        self.log = log
        self.fail_open = fail_open
        self.anonymous_limit = anonymous_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        request_id = uuid.uuid4().hex
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        peer = scope.get("client")
        client = str(peer[0]) if peer else None
        recorded = False
        refused = False  # the record of this answer was not written: nothing more of it leaves

        def record(status: int) -> bool:
            """Write the record; False when it was not written and the answer must not be served."""
            nonlocal recorded
            recorded = True
            try:
                self.log.append(self._record(scope, ts, request_id, client, status, start))
            except Exception:
                if self.fail_open:
                    log.exception("audit record of request %s not written; served (audit_fail_open)", request_id)
                    return True
                log.exception("audit record of request %s not written; answered 503 instead", request_id)
                return False
            return True

        async def send_recorded(message: Message) -> None:
            nonlocal refused
            if refused:
                return
            if message["type"] == "http.response.start":
                request_header = (b"x-request-id", request_id.encode())
                message["headers"] = [*message.get("headers", []), request_header]
                if not record(message["status"]):
                    refused = True
                    for answer in _json_answer(503, NOT_AUDITED_DETAIL, [request_header]):
                        await send(answer)
                    return
            await send(message)

        if self.anonymous_limit is not None and scope["path"].startswith("/v1/") and not _has_authorization(scope):
            wait = self.anonymous_limit.take(client)
            if wait > 0:
                limit = self.anonymous_limit
                retry = str(math.ceil(wait))
                detail = (
                    f"too many requests without a token from this address ({limit.per_minute:g} per minute, burst "
                    f"{limit.burst}); retry in {retry} s"
                )
                for message in _json_answer(429, detail, [(b"retry-after", retry.encode())]):
                    await send_recorded(message)
                return
        try:
            await self.app(scope, receive, send_recorded)
        finally:
            if not recorded:
                record(500)  # an exception escaped before the answer started: the server answers 500

    @staticmethod
    def _record(
        scope: Scope, ts: str, request_id: str, client: str | None, status: int, start: float
    ) -> dict[str, Any]:
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        record = {
            "ts": ts,
            "request_id": request_id,
            "client": _opt_clip(client),
            "subject": _opt_clip(getattr(principal, "subject", None)),
            "role": _opt_clip(getattr(principal, "role", None)),
            "token_id": _opt_clip(getattr(principal, "token_id", None)),
            "method": _opt_clip(scope.get("method"), 16),
            "path": _clip(scope.get("path", ""), MAX_PATH_BYTES),
            "endpoint": _opt_clip(getattr(scope.get("route"), "path", None)),
            "params": _params(scope),
            "status": status,
            "rows": scope.get(ROWS_SCOPE_KEY),
            "ms": round((time.perf_counter() - start) * 1000, 3),
        }
        return record


def _has_authorization(scope: Scope) -> bool:
    return any(name.lower() == b"authorization" for name, _ in scope.get("headers", ()))


# ----------------------------------------------------------------------------------------------- read and verify


def _files(directory: Path) -> list[tuple[str, Path]]:
    """(YYYYMMDD, path) of every audit file, in (day, pid, n) order."""
    if not directory.is_dir():
        return []
    found = [
        (m.group(1), int(m.group(2)), int(m.group(3) or 0), p)
        for p in directory.iterdir()
        if (m := FILE_RE.match(p.name))
    ]
    return [(day, p) for day, _, _, p in sorted(found, key=lambda t: t[:3])]


def _as_utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _bounds(since: dt.date | dt.datetime | None, until: dt.date | dt.datetime | None) -> tuple[str, str]:
    """ISO-string bounds, both inclusive; a date ``until`` includes that whole day."""
    lo, hi = "", MAX_TS
    if isinstance(since, dt.datetime):
        lo = _as_utc(since).isoformat(timespec="microseconds")
    elif isinstance(since, dt.date):
        lo = dt.datetime.combine(since, dt.time(), dt.UTC).isoformat(timespec="microseconds")
    if isinstance(until, dt.datetime):
        hi = _as_utc(until).isoformat(timespec="microseconds")
    elif isinstance(until, dt.date):
        hi = dt.datetime.combine(until, dt.time.max, dt.UTC).isoformat(timespec="microseconds")
    return lo, hi


def _status_matches(status: int | str | None) -> Callable[[Any], bool]:
    if status is None:
        return lambda s: True
    text = str(status).lower()
    if re.fullmatch(r"[1-5]xx", text):
        return lambda s: isinstance(s, int) and s // 100 == int(text[0])
    if re.fullmatch(r"\d{3}", text):
        return lambda s: s == int(text)
    raise ValueError(f"status {status!r}: expected a code like 404 or a class like 4xx")


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # verify reports it
            if isinstance(record, dict):
                yield record


def read_records(
    directory: Path | str,
    since: dt.date | dt.datetime | None = None,
    until: dt.date | dt.datetime | None = None,
    subject: str | None = None,
    path_prefix: str | None = None,
    status: int | str | None = None,
) -> Iterator[dict[str, Any]]:
    """The records matching every filter given, in time order (the files of one day are merged by ``ts``).

    ``since`` and ``until`` are inclusive (a date ``until``: to the end of that day; naive times are UTC);
    ``status`` is a code (404) or a class ("4xx"). Lines that are not JSON are skipped (``verify`` reports them).
    Reading needs no key: it does not check the chain (``verify`` does).
    """
    lo, hi = _bounds(since, until)
    # A file holds the records appended on its day; one that started just before midnight is in the next day's.
    day_lo = f"{dt.date.fromisoformat(lo[:10]):%Y%m%d}" if lo else ""
    day_hi = f"{dt.date.fromisoformat(hi[:10]) + dt.timedelta(days=1):%Y%m%d}" if hi != MAX_TS else "99999999"
    status_ok = _status_matches(status)

    def keep(r: dict[str, Any]) -> bool:
        ts = r.get("ts")
        return (
            isinstance(ts, str)
            and lo <= ts <= hi
            and (subject is None or r.get("subject") == subject)
            and (path_prefix is None or str(r.get("path", "")).startswith(path_prefix))
            and status_ok(r.get("status"))
        )

    by_day: dict[str, list[Path]] = {}
    for day, path in _files(Path(directory)):
        if day_lo <= day <= day_hi:
            by_day.setdefault(day, []).append(path)
    for day in sorted(by_day):
        streams: Iterable[dict[str, Any]] = heapq.merge(
            *(_read_file(p) for p in by_day[day]), key=lambda r: str(r.get("ts", ""))
        )
        yield from (r for r in streams if keep(r))


def _chain_problems(name: str, lines: list[bytes], key: bytes) -> Iterator[str]:
    expected = _genesis(key, name)
    for n, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            yield f"{name}: line {n} is not JSON"
        else:
            prev = record.get("prev") if isinstance(record, dict) else None
            if not isinstance(prev, str):
                yield f"{name}: line {n} has no 'prev' hash"
            elif hmac.compare_digest(prev, expected):
                pass
            elif n == 1:
                yield (
                    f"{name}: line 1 does not start this file's chain (lines before it were removed, or the file was "
                    "renamed or forged)"
                )
            elif prev == hashlib.sha256(lines[n - 2]).hexdigest():
                yield (
                    f"{name}: line {n} does not follow line {n - 1}: it holds a plain SHA-256, not the audit "
                    "key's HMAC (rewritten without the key, or written before the audit log was keyed)"
                )
            else:
                yield f"{name}: line {n} does not follow line {n - 1} (a line was edited, removed or inserted)"
        expected = _mac(key, line)


def _day_of(name: str) -> dt.date | None:
    m = FILE_RE.match(name)
    try:
        return dt.datetime.strptime(m.group(1), "%Y%m%d").date() if m else None
    except ValueError:
        return None  # not a day: only a hand-made file has such a name; it is always checked (and reported)


def _within(name: str, since: dt.date | None, until: dt.date | None) -> bool:
    day = _day_of(name)
    return day is None or ((since is None or day >= since) and (until is None or day <= until))


def verify(
    directory: Path | str,
    key: bytes,
    anchors: Mapping[str, FileAnchor] | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[str]:
    """Problems found in the audit files under ``directory`` (empty: every chain is intact), checked with ``key``.

    Reports lines that are not JSON objects, a ``prev`` that is not the HMAC of the line before (a line edited,
    deleted, inserted, or a file re-chained without the key), a first line that does not start the file's chain
    (its head removed, or the file renamed or forged), and a last line without its newline (the file was cut).
    With ``anchors`` (``read_anchor(...).files``) also: a file removed, a file with fewer lines than anchored (its
    last lines removed), and a file whose anchored line is not the one anchored (its last line edited). At most
    MAX_PROBLEMS_PER_FILE problems are listed per file. ``since`` and ``until`` (inclusive) restrict the check,
    anchor entries included, to the files of those days: older files removed by a retention policy, or an archive
    of some days checked against an anchor that holds more.
    """
    anchors = {n: a for n, a in (anchors or {}).items() if _within(n, since, until)}
    problems: list[str] = []
    files = [(day, p) for day, p in _files(Path(directory)) if _within(p.name, since, until)]
    for name in sorted(set(anchors) - {p.name for _, p in files}):
        problems.append(f"{name}: the file is missing (the anchor holds {anchors[name].lines} lines of it)")
    for _, path in files:
        name, data = path.name, path.read_bytes()
        found: list[str] = []
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        elif data:
            found.append(f"{name}: line {len(lines)} has no newline (the file was cut)")
        found.extend(itertools.islice(_chain_problems(name, lines, key), MAX_PROBLEMS_PER_FILE + 1))
        anchor = anchors.get(name)
        if anchor is not None and len(lines) < anchor.lines:
            found.append(
                f"{name}: {len(lines)} lines where the anchor holds {anchor.lines}: lines were removed from its end"
            )
        elif anchor is not None and not hmac.compare_digest(_mac(key, lines[anchor.lines - 1]), anchor.head):
            found.append(f"{name}: line {anchor.lines} is not the line anchored (the file was rewritten)")
        if len(found) > MAX_PROBLEMS_PER_FILE:
            found = [*found[:MAX_PROBLEMS_PER_FILE], f"{name}: more problems not listed"]
        problems.extend(found)
    return problems


@dataclass(frozen=True)
class Verification:
    """What ``verify_log`` found: ``problems`` (empty: intact), the files checked, the anchor used (None: none),
    and the files the anchor does not hold yet (written after it: their last lines are not covered)."""

    problems: list[str]
    files: list[str]
    anchor: Anchor | None
    unanchored: list[str]


def verify_log(
    directory: Path | str,
    key: bytes,
    anchor_file: Path | str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Verification:
    """``verify`` against the anchor file (default ``<directory>/anchor.json``; a copy kept elsewhere is better),
    restricted to the files of the days from ``since`` to ``until`` when given.

    An anchor that is missing while there are audit files, or that does not verify, is a problem: without it, files
    removed and lines removed from the end of a file cannot be seen.
    """
    directory = Path(directory)
    anchor_file = Path(anchor_file) if anchor_file is not None else directory / ANCHOR_NAME
    files = [p.name for _, p in _files(directory) if _within(p.name, since, until)]
    problems: list[str] = []
    anchor: Anchor | None = None
    try:
        anchor = read_anchor(anchor_file, key)
    except FileNotFoundError:
        if files:
            problems.append(
                f"{anchor_file}: no anchor file, so files removed and lines removed from the end of a file cannot be "
                "detected; pass --anchor with a copy"
            )
    except (AnchorError, OSError) as exc:
        problems.append(str(exc) if isinstance(exc, AnchorError) else f"{anchor_file}: {exc.strerror}")
    problems.extend(verify(directory, key, anchor.files if anchor else None, since, until))
    unanchored = [n for n in files if anchor is not None and n not in anchor.files]
    return Verification(problems=problems, files=files, anchor=anchor, unanchored=unanchored)
