"""Settings: every knob has a laptop default and an environment variable ``LABPORTAL_<NAME>``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

PREFIX = "LABPORTAL_"


def normalize_database_url(url: str) -> str:
    """Plain ``sqlite://`` / ``postgresql://`` URLs get the async drivers the portal uses."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///labportal.sqlite3"
    """LABPORTAL_DATABASE_URL: SQLite file by default, ``postgresql://...`` in production."""
    migrate_on_start: bool = False
    """LABPORTAL_MIGRATE_ON_START: run ``alembic upgrade head`` when the app starts."""
    host: str = "127.0.0.1"
    port: int = 8000
    base_url: str = ""
    """LABPORTAL_BASE_URL: the portal's public origin, for invitation links and the Origin
    check (default: http://HOST:PORT; never a request's Host header)."""
    cookie_secure: bool = False
    """LABPORTAL_COOKIE_SECURE: set the Secure flag on the session cookie (behind HTTPS)."""
    session_ttl_seconds: int = 12 * 3600
    login_max_failures: int = 5
    """LABPORTAL_LOGIN_MAX_FAILURES: failed logins per e-mail from one client address (x4
    per client address over all e-mails)..."""
    login_window_seconds: int = 300
    """...within this window before answering 429."""
    register_max_per_address: int = 20
    """LABPORTAL_REGISTER_MAX_PER_ADDRESS: registrations per client address..."""
    register_window_seconds: int = 3600
    """...within this window before answering 429."""
    password_hash_concurrency: int = 2
    """LABPORTAL_PASSWORD_HASH_CONCURRENCY: argon2 computations at once in the process (each
    takes ARGON2_MEMORY_KIB and a core)..."""
    password_hash_wait_seconds: float = 10.0
    """...and how long a request waits for one before answering 503."""
    invitation_ttl_hours: int = 7 * 24
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    coordinator_url: str = ""
    """LABPORTAL_COORDINATOR_URL: the older name of CLUSTER_URL. /readyz is 503 until a
    cluster is configured (URL and secret) and its coordinator and a node answer."""
    cluster_url: str = ""
    """LABPORTAL_CLUSTER_URL: the slidestore coordinator materials are stored through
    (default: COORDINATOR_URL). Without it, material endpoints answer 503."""
    cluster_secret: str = ""
    """LABPORTAL_CLUSTER_SECRET: the cluster's token secret (SLIDESTORE_SECRET)."""
    cluster_timeout_seconds: int = 10
    team_quota_bytes: int = 1 << 40
    """LABPORTAL_TEAM_QUOTA_BYTES: slide bytes one team may hold, uploads in progress
    included (0: no limit). A material past it is refused before any space is promised."""
    view_token_ttl_seconds: int = 300
    """LABPORTAL_VIEW_TOKEN_TTL_SECONDS: lifetime of the read tokens handed to viewers."""
    frontend_dir: str = ""
    """LABPORTAL_FRONTEND_DIR: where ``npm ci`` put node_modules (default: apps/labportal/frontend)."""
    metrics_token: str = ""
    """LABPORTAL_METRICS_TOKEN: the bearer token /metrics demands (unset: /metrics is off)."""
    dask_scheduler: str = ""
    """LABPORTAL_DASK_SCHEDULER: the Dask scheduler tasks run on (``tcp://host:8786``);
    unset: an embedded LocalCluster in each process that runs tasks."""
    dask_workers: int = 0
    """LABPORTAL_DASK_WORKERS: worker processes of the embedded LocalCluster (0: one per core)."""
    task_runner: bool = True
    """LABPORTAL_TASK_RUNNER: run queued tasks inside the portal process (off: only
    ``labportal worker`` processes run them)."""
    task_concurrency: int = 2
    """LABPORTAL_TASK_CONCURRENCY: tasks one runner has on Dask at once."""
    task_lease_seconds: int = 30
    """LABPORTAL_TASK_LEASE_SECONDS: a runner renews its claim on a running task this often
    (every third of it); a task whose lease ran out (its runner died) is claimed again."""
    task_poll_seconds: float = 1.0
    """LABPORTAL_TASK_POLL_SECONDS: how often an idle runner looks for queued tasks."""
    task_timeout_seconds: int = 3600
    """LABPORTAL_TASK_TIMEOUT_SECONDS: a run longer than this fails; it also bounds the
    life of the read token the run's workers get."""
    models_dir: str = "labportal-models"
    """LABPORTAL_MODELS_DIR: where registered ONNX files are stored, as ``<sha256>.onnx``
    (every Dask worker must see it: a shared filesystem with a remote scheduler)."""
    model_max_bytes: int = 512 * 1024 * 1024
    """LABPORTAL_MODEL_MAX_BYTES: the largest ONNX file a team admin may register."""
    log_level: str = "INFO"
    debug: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is None:
                continue
            if field.type == "bool":
                values[field.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif field.type == "int":
                values[field.name] = int(raw)
            elif field.type == "float":
                values[field.name] = float(raw)
            else:
                values[field.name] = raw
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def coordinator(self) -> str:
        return (self.cluster_url or self.coordinator_url).rstrip("/")

    @property
    def public_url(self) -> str:
        """Where people reach the portal: configured, never taken from a request."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
