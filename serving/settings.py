"""Settings of the API deployable, overridable by ``ROUTECAST_*`` environment variables.

The API knows only the published store: it has no setting that could point it at the lake.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

# The privacy floor of design.md: a release made with a lower threshold is refused.
MIN_DEVICES_FLOOR = 10


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTECAST_", frozen=True, extra="ignore")

    var_dir: Path = Path("var")  # the same variable as the jobs', so both agree on where the store is
    routes_dir: Path | None = None  # default: the catalogue packaged with geo

    @property
    def store_dir(self) -> Path:
        return self.var_dir / "store"


@lru_cache
def get_settings() -> ServingSettings:
    """The process's settings (a dependency; tests override it)."""
    return ServingSettings()
