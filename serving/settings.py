"""Settings of the API deployable, overridable by ``ROUTECAST_*`` environment variables.

The API knows only the published store: it has no setting that could point it at the lake.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTECAST_", frozen=True, extra="ignore")

    var_dir: Path = Path("var")  # the same variable as the jobs', so both agree on where the store is
    routes_dir: Path | None = None  # default: the catalogue packaged with geo

    # Auth: HS256-signed bearer tokens. The key is ROUTECAST_JWT_SECRET, or else the key file (created with
    # mode 0600 on first use by `routecast token create` or the API, so that both sides agree without setup).
    jwt_secret: SecretStr | None = None
    jwt_key_file: Path | None = None  # default: <var_dir>/keys/jwt-hs256.key
    jwt_issuer: str = "routecast"
    jwt_audience: str = "routecast-api"
    token_max_ttl_hours: float = Field(default=24 * 90, gt=0, description="Longest lifetime a token may be issued for.")

    # Requests per token: a token bucket of `rate_limit_burst` refilled at `rate_limit_per_minute`.
    rate_limit_per_minute: float = Field(default=600, gt=0)
    rate_limit_burst: int = Field(default=60, ge=1)

    # Revoked token ids (`routecast token revoke`), one JSON object per line; every worker looks at the file again
    # at most every `revocation_check_s` seconds, so a revocation takes effect within that time everywhere.
    revocation_file: Path | None = None  # default: <var_dir>/keys/revoked-tokens.jsonl
    revocation_check_s: float = Field(default=2.0, gt=0, le=60)

    # Whole answers kept in memory per process (serving.fastpath), least recently used out first.
    answer_cache_mb: float = Field(default=64.0, ge=0, description="Memory budget of the answer cache (0: off).")

    # The audit log (serving/audit.py). Lines are chained with HMAC-SHA256 under the audit key, ROUTECAST_AUDIT_KEY or
    # else the key file (created with mode 0600 on first use); not the token key. The anchor (each file's line count
    # and latest HMAC) is rewritten at most `audit_anchor_interval_s` after the last time while records are written.
    audit_dir: Path | None = None  # default: <var_dir>/audit
    audit_key: SecretStr | None = None
    audit_key_file: Path | None = None  # default: <var_dir>/keys/audit-hmac.key
    audit_anchor_file: Path | None = None  # default: <audit_dir>/anchor.json
    audit_anchor_interval_s: float = Field(default=60.0, gt=0, le=3600)
    # True: when a record cannot be written, serve the request anyway and log the error (default: answer 503).
    audit_fail_open: bool = False
    # Requests to /v1/ without any Authorization header, per client address (token bucket; over it, 429).
    anon_rate_limit_per_minute: float = Field(default=120, gt=0)
    anon_rate_limit_burst: int = Field(default=30, ge=1)

    # What-if scenarios (POST /v1/scenarios): where each one asked for is kept, and the Monte Carlo draws it runs.
    scenarios_dir: Path | None = None  # default: <var_dir>/scenarios
    scenario_draws: int = Field(default=1000, ge=100, le=20_000, description="Monte Carlo draws per scenario.")
    # The behaviour parameters scenarios run with (diversion, lags, release; `routecast scenario estimate` writes
    # them from a past closure): a ScenarioParameters JSON file. Unset: the engine's defaults.
    scenario_parameters: Path | None = None

    # How often the API looks at store/CURRENT for a newly published release (0: only on POST /v1/admin/reload).
    reload_interval_s: float = Field(default=10.0, ge=0)

    # Alerts: a series alerts when its forecast or latest observation is above `alert_quantile` of its published
    # history times `alert_factor`, or when the latest observation falls outside the 95 % interval that the
    # previous release forecast for that day.
    alert_quantile: float = Field(default=0.95, gt=0, lt=1)
    alert_factor: float = Field(default=1.0, gt=0)

    @property
    def store_dir(self) -> Path:
        return self.var_dir / "store"

    @property
    def key_file(self) -> Path:
        return self.jwt_key_file or self.var_dir / "keys" / "jwt-hs256.key"

    @property
    def revoked_file(self) -> Path:
        return self.revocation_file or self.var_dir / "keys" / "revoked-tokens.jsonl"

    @property
    def audit_path(self) -> Path:
        return self.audit_dir or self.var_dir / "audit"

    @property
    def scenarios_path(self) -> Path:
        return self.scenarios_dir or self.var_dir / "scenarios"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.var_dir / "keys" / "audit-hmac.key"

    @property
    def audit_anchor_path(self) -> Path:
        return self.audit_anchor_file or self.audit_path / "anchor.json"


@lru_cache
def get_settings() -> ServingSettings:
    """The process's settings (a dependency; tests override it)."""
    return ServingSettings()
