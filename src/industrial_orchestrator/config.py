"""All settings, read once at start-up from the environment and ``.env`` (user guide §8).

``Settings`` is built by the composition root (``cli/`` / ``api/app.py``), never at
import time. ``load_settings`` turns a validation failure into ``ConfigurationError``
with one line per bad variable, so the CLI can stop without a traceback.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .domain.priorities import Priority


class ConfigurationError(Exception):
    """The environment holds a value the orchestrator cannot use."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Database: SQLite under ORCHESTRATOR_HOME unless DB_HOST or DATABASE_URL is set.
    database_url: SecretStr | None = Field(
        None, description="Full SQLAlchemy URL; overrides every DB_* variable"
    )
    db_host: str | None = Field(None, description="PostgreSQL host; unset means embedded SQLite")
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port")
    db_name: str = Field("orchestration", description="PostgreSQL database name")
    db_user: str = Field("cybernetics", description="PostgreSQL user")
    db_password: SecretStr = Field(
        SecretStr("secure_password"), description="PostgreSQL password (never printed or logged)"
    )
    db_pool_size: int = Field(
        20,
        ge=1,
        le=200,
        description="The most PostgreSQL connections a process opens (as load needs them; each "
        "kept open once opened)",
    )
    db_plan_cache_mode: Literal["force_generic_plan", "auto", "force_custom_plan"] = Field(
        "force_generic_plan",
        description="PostgreSQL's `plan_cache_mode` for the orchestrator's connections: "
        "`force_generic_plan` plans each statement once per connection (its statements are "
        "written for that); `auto` is PostgreSQL's own default, which re-plans many of "
        "them on every run",
    )
    orchestrator_home: Path = Field(Path("./.orchestrator"), description="Data directory")

    # Redis: only used when REDIS_HOST is set.
    redis_host: str | None = Field(
        None, description="Redis host; unset: wake-ups, locks and the agent cache stay in-process"
    )
    redis_port: int = Field(6379, ge=1, le=65535, description="Redis port")
    redis_password: SecretStr | None = Field(None, description="Redis password")
    redis_db: int = Field(0, ge=0, description="Redis database number")
    redis_prefix: str = Field(
        "orchestrator", min_length=1, description="Prefix of every Redis key and channel"
    )

    # OpenCode.
    opencode_host: str | None = Field(
        None,
        description="Host of a running `opencode serve`; unset: the orchestrator starts its own "
        "(OPENCODE_BIN)",
    )
    opencode_port: int = Field(
        4096, ge=1, le=65535, description="Port of the OpenCode server at OPENCODE_HOST"
    )
    opencode_password: SecretStr = Field(
        SecretStr("industrial_secure"),
        description="Password of the OpenCode server at OPENCODE_HOST (HTTP Basic, user "
        "`opencode`)",
    )
    opencode_bin: Path | None = Field(
        None,
        description="opencode binary the orchestrator starts when OPENCODE_HOST is unset "
        "(default: `opencode` on PATH)",
    )
    opencode_model: str | None = Field(
        None,
        pattern=r"^[^/\s]+/\S+$",
        description="Model of the internal agents as provider/model (default: OpenCode's own)",
    )
    opencode_config: str | None = Field(
        None, description="JSON config handed to a managed server (OPENCODE_CONFIG_CONTENT)"
    )
    opencode_agents: str | None = Field(
        None, description="JSON list defining the internal agent fleet (default: five agents)"
    )
    internal_agents: bool = Field(
        True, description="Enlist the internal OpenCode fleet when the engine runs"
    )
    opencode_timeout_seconds: float = Field(
        15.0, gt=0, le=600, description="Timeout of each call to the OpenCode server"
    )
    opencode_poll_seconds: float = Field(
        2.0, gt=0, le=600, description="How often a task's OpenCode status is polled"
    )
    provider_retry_budget_seconds: float = Field(
        180.0,
        gt=0,
        le=86_400,
        description="How long a model provider may keep failing (OpenCode retrying it) "
        "before the task fails for good, naming the provider's error and the setting to fix",
    )
    permission_policy: Literal["workspace", "ask"] = Field(
        "workspace",
        description="OpenCode permission requests: allowed inside the workspace, or always "
        "asked of the operator",
    )
    workspace_roots: str = Field(
        "~",
        description="Comma-separated directories session workspaces must lie under",
    )

    # Application.
    app_name: str = Field(
        "Industrial Orchestrator", description="Application name (OpenAPI title, start-up line)"
    )
    app_version: str = Field("1.0.0", description="Version shown in the OpenAPI document")
    app_env: Literal["development", "production"] = Field(
        "development", description="Deployment environment (accepted; changes nothing yet)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of the JSON log lines written"
    )
    debug: bool = Field(
        False, description="Accepted for the user guide's sake; changes nothing (no debug pages)"
    )

    # Session limits.
    max_concurrent_sessions: int = Field(
        25,
        ge=1,
        description="Sessions holding a running slot (RUNNING or DEGRADED) at once; more are "
        "QUEUED",
    )
    session_timeout_seconds: int = Field(
        3600,
        ge=1,
        description="Running time after which a session ends TIMEOUT (a session may set its own)",
    )
    default_session_priority: Priority = Field(
        Priority.MEDIUM, description="Priority of a session created without one"
    )
    checkpoint_retention: int = Field(
        100, ge=1, description="Checkpoints kept per session; the oldest are deleted"
    )

    # Security.
    secret_key: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(48)),
        min_length=32,
        description="Signs agent tokens and the dashboard's CSRF tokens; unset: `serve` makes "
        "one on its first start and keeps it in ORCHESTRATOR_HOME/secret_key (mode 0600). "
        "Set it, the same everywhere, for replicas on PostgreSQL",
    )
    access_token_expire_minutes: int = Field(
        30, ge=1, description="Lifetime of an agent's token; every heartbeat answers a fresh one"
    )
    auth_required: bool = Field(
        False,
        description="Ask for an operator token on loopback too (always asked on other binds)",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, le=1_000_000, description="Changes per operator token per minute; 0: no limit"
    )
    trusted_hosts: str = Field(
        "",
        description="Comma-separated extra Host names the server answers to (besides "
        "loopback names, the bound address and ALLOWED_HOSTS' hosts); '*' for any",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated origins of web pages allowed to call the API from a "
        "browser (CORS, and changes without a bearer token); empty: only the server's own "
        "pages. '*' needs operator tokens to be required",
    )

    # Agents and the External Agent Protocol.
    agent_registration_token: SecretStr | None = Field(
        None,
        description="Bearer token external agents must present to register; "
        "required when the server binds a non-loopback address",
    )
    agent_heartbeat_seconds: float = Field(
        30.0, gt=0, le=3600, description="Heartbeat interval asked of agents; 3 missed = offline"
    )
    task_lease_seconds: float = Field(
        90.0, gt=0, le=86400, description="A leased task returns to the queue if not renewed"
    )
    task_max_attempts: int = Field(3, ge=1, le=100, description="Leases per task before it fails")
    task_timeout_seconds: int = Field(3600, ge=1, description="Time an agent is given per task")
    artifact_max_bytes: int = Field(
        1024 * 1024, ge=1, le=64 * 1024 * 1024, description="Largest artifact accepted"
    )
    artifact_max_count: int = Field(100, ge=1, le=10_000, description="Artifacts per result")
    agent_cache_seconds: float = Field(
        1.0, gt=0, le=60, description="How long replicas share a routing snapshot (Redis only)"
    )
    reaper_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description=(
            "How often silent agents and expired leases are reaped, and effects a dead "
            "process left unfinished are finished"
        ),
    )
    effect_grace_seconds: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description=(
            "With several replicas: how old an unfinished effect (files written, a "
            "checkpoint commit) must be before another replica finishes it; longer than "
            "any effect takes. With SQLite (one process) they are finished at start"
        ),
    )
    failpoints: str = Field(
        "",
        description=(
            "Testing aid, never for production: comma-separated steps at which the "
            "process kills itself as a crash would (effects.recorded, effects.performed, "
            "optionally :<kind>, e.g. effects.performed:workspace.write)"
        ),
    )

    # The engine.
    engine_enabled: bool = Field(
        True, description="Run the session engine (planning, dispatch, review) in this process"
    )
    engine_tick_seconds: float = Field(
        1.0,
        gt=0,
        le=3600,
        description=(
            "Longest wait between two rounds of the session engine; how often the "
            "internal agents beat"
        ),
    )
    engine_coalesce_seconds: float = Field(
        3.0,
        ge=0,
        le=60,
        description=(
            "A session stepped less than this ago that only task results touched since, "
            "with tasks of its plan still open, is stepped this long after that step, "
            "taking them in at once (one step, one checkpoint commit): under load, fewer "
            "steps; its plan's next tasks are READY at each result all the same. Its last "
            "result, a failure, an operator's action are stepped at once. 0: a step after "
            "every result"
        ),
    )
    session_max_parallel_tasks: int = Field(
        4, ge=1, le=1000, description="Tasks of one session worked on at once (default)"
    )
    checkpoint_interval_seconds: float = Field(
        300.0,
        gt=0,
        le=86400,
        description=(
            "A running session is checkpointed this often when something changed (its "
            "tasks, the work in flight, its usage or its files); a look that finds nothing "
            "new records no checkpoint"
        ),
    )
    session_lease_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="A replica that stops renewing a session's ownership this long loses it",
    )
    verify_timeout_seconds: float = Field(
        600.0, gt=0, le=86400, description="A session's verify_command is killed after this"
    )

    # The loop and stall guard (internal agents): 0 turns a check off.
    guard_repeated_tool_calls: int = Field(
        4,
        ge=0,
        le=1000,
        description="An agent calling one tool with the same input this many times in a row "
        "is stopped, its files rolled back and its task given to another agent; 0: off",
    )
    guard_stall_steps: int = Field(
        8,
        ge=0,
        le=1000,
        description="An agent ending this many steps in a row without changing the files "
        "into anything new is stopped likewise; 0: off",
    )
    guard_task_token_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of its session's max_tokens one task's attempt may use before it "
        "is stopped likewise (sessions without a token budget: no limit); 0: off",
    )

    # Live streams.
    ws_heartbeat_seconds: float = Field(15.0, gt=0, le=3600, description="Silence before a ping")
    ws_queue_size: int = Field(
        1024, ge=1, le=1_000_000, description="Events queued per client before it reads the log"
    )
    ws_send_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="A client that accepts no data this long is cut off"
    )
    event_poll_seconds: float = Field(
        1.0, gt=0, le=3600, description="Re-read of the log when no wake-up came (Redis lost)"
    )

    # Webhooks.
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="A webhook receiver that has not answered this long fails"
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts per webhook delivery before it is marked failed"
    )
    webhook_backoff_seconds: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="Wait before a webhook delivery's first retry; doubles each time (max 1 h)",
    )
    webhook_poll_seconds: float = Field(
        1.0, gt=0, le=3600, description="Longest wait between two rounds of the webhook sender"
    )

    @property
    def database(self) -> URL:
        """The SQLAlchemy URL in use, with the async driver for its dialect."""
        if self.database_url is not None:
            url = make_url(self.database_url.get_secret_value())
            return _with_async_driver(url)
        if self.db_host:
            return URL.create(
                "postgresql+asyncpg",
                username=self.db_user,
                password=self.db_password.get_secret_value(),
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
            )
        return URL.create("sqlite+aiosqlite", database=str(self.sqlite_path))

    @property
    def sqlite_path(self) -> Path:
        return self.orchestrator_home / "orchestrator.db"

    @property
    def database_display(self) -> str:
        """The database URL with its password hidden, safe for logs and banners."""
        return self.database.render_as_string(hide_password=True)

    @property
    def workspace_root_paths(self) -> list[Path]:
        return [
            Path(root.strip()).expanduser().resolve()
            for root in self.workspace_roots.split(",")
            if root.strip()
        ]

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.allowed_hosts.split(",") if origin.strip()]


def _with_async_driver(url: URL) -> URL:
    backend = url.get_backend_name()
    if not url.database:
        # PostgreSQL would quietly fall back to the user's default database.
        raise ConfigurationError(
            "Invalid configuration:\n  DATABASE_URL: names no database; "
            "expected e.g. postgresql://user:password@host:5432/orchestration"
        )
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ConfigurationError(
        f"DATABASE_URL: unsupported database '{backend}' (accepts postgresql:// or sqlite://)"
    )


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or raise ``ConfigurationError`` naming every bad variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        _ = settings.database
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            value = error.get("input")
            shown = (
                ""
                if isinstance(value, dict) or any(s in name for s in ("PASSWORD", "KEY", "URL"))
                else (f"={value!r}")
            )
            lines.append(f"{name}{shown}: {error['msg']}")
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
    except (ArgumentError, ValueError) as exc:  # after ValidationError, a ValueError too
        raise ConfigurationError(
            f"Invalid configuration:\n  DATABASE_URL: not a database URL ({exc}); "
            "expected e.g. postgresql://user:password@host:5432/name or sqlite:///path.db"
        ) from None
    return settings
