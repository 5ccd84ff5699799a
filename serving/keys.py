"""Secret keys on disk and in settings: one way to create a key file, to read one that only its owner may read,
and to tell a key that is not random. Used for the token signing key (serving.auth) and the audit key
(serving.audit); each says in its own words what a refused key would allow."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32  # as long as the SHA-256 output: RFC 7518 §3.2 (HS256) and RFC 2104 §3 (HMAC)
MIN_DISTINCT_KEY_BYTES = 10  # a hex key has 16 distinct bytes, a random binary one about 30
ADVICE = "make one with `openssl rand -hex 32` (or delete the key file and let routecast create one)"


class ExposedKeyFile(OSError):
    """A key file that is not a regular file, or that group or others may read or write; ``mode`` says which."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(f"{path}: mode {stat.S_IMODE(mode):04o}")
        self.path, self.mode = path, mode


def key_weakness(key: bytes, what: str) -> str | None:
    """Why ``key`` (at least KEY_BYTES long, checked by the caller) is not a random key, or None: fewer than
    MIN_DISTINCT_KEY_BYTES distinct bytes, or one pattern repeated."""
    if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        return f"the {what} is weak ({len(set(key))} distinct bytes, e.g. one repeated character); {ADVICE}"
    period = smallest_period(key)
    if period <= len(key) // 2:
        return f"the {what} is one {period}-byte pattern repeated; {ADVICE}"
    return None


def smallest_period(data: bytes) -> int:
    """The smallest p such that data[i] == data[i - p] for every i >= p (the prefix function; linear time)."""
    border = [0] * len(data)
    for i in range(1, len(data)):
        k = border[i - 1]
        while k and data[i] != data[k]:
            k = border[k - 1]
        border[i] = k + (data[i] == data[k])
    return len(data) - (border[-1] if data else 0)


def read_private_key_file(path: Path) -> bytes:
    """The key in ``path``; FileNotFoundError when there is none, ExposedKeyFile when it is not a regular file only
    its owner may read and write."""
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode) or mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ExposedKeyFile(path, mode)
        return f.read()


def create_key_file(path: Path) -> None:
    """Write KEY_BYTES random bytes to ``path`` (mode 0600) unless a key is there already."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written in full under a temporary name, then linked into place: a reader never sees a partial key, and when
    # two processes race, os.link refuses to replace the winner's key, so both end up using the same one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
