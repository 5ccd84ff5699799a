"""What the API holds in memory: the route catalogue and the current release, loaded in ``lifespan``.

The current release is swapped by assigning one attribute: a request that already holds the old release object
finishes with it, the next one gets the new release, and nothing is ever half-loaded (a release is built in
full, off the event loop, before the swap). A release that fails to load never replaces a good one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from geo.catalogue import Catalogue
from serving.settings import ServingSettings
from serving.store import NoRelease, Release, StoreError, UnknownRelease, current_release_id, load_release

log = logging.getLogger("routecast.serving")

# Releases other than the current one that requests asked for by id, kept loaded (least recently used first out).
OTHER_RELEASES_KEPT = 4


@dataclass
class AppState:
    settings: ServingSettings
    catalogue: Catalogue
    release: Release | None = None
    release_error: str | None = None  # why there is no release, or why the newest one was refused
    _others: OrderedDict[str, Release] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reload(self) -> bool:
        """Load the release CURRENT points at, if it is not the one served; True when the release changed.

        On failure the release being served (if any) stays, and ``release_error`` says what was refused.
        Blocking (reads Parquet): call it from a thread when on the event loop.
        """
        with self._lock:
            try:
                wanted = current_release_id(self.settings.store_dir)
                if self.release is not None and self.release.release_id == wanted:
                    self.release_error = None
                    return False
                release = load_release(self.settings.store_dir, wanted)
            except StoreError as exc:
                self.release_error = str(exc)
                if self.release is not None and not isinstance(exc, NoRelease):
                    log.error("release refused, still serving %s: %s", self.release.release_id, exc)
                else:
                    log.warning("no release loaded: %s", exc)
                return False
            swapped = self.release is not None
            self.release, self.release_error = release, None
            log.info("serving release %s", release.release_id)
        _freeze_long_lived(collect=swapped)
        return True

    def release_by_id(self, release_id: str) -> Release:
        """A release by id: the current one, or another kept loaded after its first request."""
        current = self.release
        if current is not None and current.release_id == release_id:
            return current
        with self._lock:
            if release_id in self._others:
                self._others.move_to_end(release_id)
                return self._others[release_id]
        release = load_release(self.settings.store_dir, release_id)
        with self._lock:
            self._others[release_id] = release
            while len(self._others) > OTHER_RELEASES_KEPT:
                self._others.popitem(last=False)
        return release


def _freeze_long_lived(*, collect: bool) -> None:
    """Move what is loaded now (the release's hundreds of thousands of objects) out of the collector's sight.

    A full collection otherwise walks them all, 2-3 times a second under load (~75 ms each: a fifth of the
    server's time in bench/api.py). Frozen objects are still freed when no longer referenced. When a release
    replaced another (``collect``), unfreezing and collecting first reclaims the previous one's reference cycles,
    so that a server running for months holds at most one release's worth of frozen garbage.
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


async def watch_store(state: AppState, interval_s: float) -> None:
    """Look for a newly published release every ``interval_s`` seconds, loading it off the event loop."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(state.reload)
        except Exception:  # the watcher must outlive any surprise; the error is logged and it tries again
            log.exception("reload failed")


def get_state(request: Request) -> AppState:
    return request.app.state.routecast


StateDep = Annotated[AppState, Depends(get_state)]


def unavailable(state: AppState) -> HTTPException:
    return HTTPException(status_code=503, detail=f"no forecasts available: {state.release_error}")


def require_release(state: StateDep) -> Release:
    """The current release, or 503 when none could be loaded."""
    release = state.release
    if release is None:
        raise unavailable(state)
    return release


ReleaseDep = Annotated[Release, Depends(require_release)]


async def chosen_release(state: AppState, release_id: str | None) -> Release:
    """The release a request names (404 if the store has no such release), else the current one. A release not
    yet in memory is loaded off the event loop."""
    if release_id is None:
        return require_release(state)
    current = state.release
    if current is not None and current.release_id == release_id:
        return current
    try:
        return await asyncio.to_thread(state.release_by_id, release_id)
    except UnknownRelease:
        raise HTTPException(status_code=404, detail=f"unknown release {release_id!r}") from None
    except StoreError as exc:
        raise HTTPException(status_code=503, detail=f"release {release_id!r} cannot be served: {exc}") from None
