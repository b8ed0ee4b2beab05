"""Settings from ZOOMCAL_* environment variables (and an optional .env file in the data directory)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("zoomcal", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOOMCAL_", env_file=None, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    # Base64 keys for the token vault: "kid1:base64key,kid2:base64key"; the first one encrypts.
    vault_keys: str | None = None
    # the tenant commands act in (the CLI's --tenant)
    tenant: str = "default"
    mapping_rules: Path | None = None
    presence_rules: Path | None = None
    http_timeout: float = 20.0
    max_retries: int = 4
    mass_delete_share: float = 0.5
    mass_delete_min: int = 5
    # on-premises servers (Exchange, Nextcloud, an intranet feed) live on private addresses: allow them here
    allow_private_urls: bool = False
    # the Zoom app's webhook secret token (verifies x-zm-signature on /webhooks/zoom); during a rotation several,
    # comma-separated: the first answers Zoom's URL validation, any of them verifies a notification
    zoom_webhook_secret: str | None = None
    # who runs the jobs: "embedded" (inside `zoomcal sync` / `zoomcal serve`), "procrastinate" (`zoomcal worker`
    # processes), or "auto": procrastinate with PostgreSQL, embedded with SQLite
    jobs: str = "auto"
    # minutes between reconciliation rounds (everyone synced in full, whatever notifications said)
    reconcile_minutes: int = 15
    # people the embedded runner (`zoomcal sync`, `zoomcal serve` with SQLite) syncs at once; their requests to
    # the providers overlap, their store writes take turns
    sync_concurrency: int = Field(default=4, ge=1, le=64)
    # seconds a silent sync run (or worker) keeps its calendars (and its jobs) before another process takes over
    lease_seconds: float = 45.0
    # where providers reach this zoomcal (https://zoomcal.example.org): Google and Graph push channels are
    # created to {public_url}/webhooks/{channel}; without it none are created and changes are found by polling
    public_url: str | None = None
    # a bearer token for `zoomcal serve`'s read endpoints (/events); unset: served on a loopback bind only
    api_token: str | None = None
    # days an audit entry stays in the live trail before it moves to the archive (0: it stays); none is deleted
    audit_retention_days: int = Field(default=0, ge=0)
    # "Sign in with Zoom" on the portal: a Zoom user OAuth app (its redirect URI: {portal}/login/zoom/callback);
    # unset: the portal signs in with passwords and links only
    portal_zoom_client_id: str | None = None
    portal_zoom_client_secret: str | None = None
    portal_zoom_api_base: str = "https://api.zoom.us/v2"
    portal_zoom_token_url: str = "https://zoom.us/oauth/token"
    # "Sign in with Google" (OpenID Connect): a Google OAuth web client (redirect URI {portal}/login/google/callback);
    # with a Workspace domain, only its accounts (the ID token's `hd`)
    portal_google_client_id: str | None = None
    portal_google_client_secret: str | None = None
    portal_google_issuer: str = "https://accounts.google.com"
    portal_google_domain: str | None = None
    # "Sign in with Microsoft" (OpenID Connect): an Entra ID app registration (redirect URI
    # {portal}/login/microsoft/callback) and the directory (tenant id or verified domain) whose members may sign in
    portal_microsoft_client_id: str | None = None
    portal_microsoft_client_secret: str | None = None
    portal_microsoft_tenant: str | None = None
    portal_microsoft_authority: str = "https://login.microsoftonline.com"

    def uses_workers(self) -> bool:
        """Whether due marks go to procrastinate workers (PostgreSQL, unless told to run embedded)."""
        if self.jobs == "embedded":
            return False
        return self.jobs == "procrastinate" or self.resolved_database_url().startswith("postgresql")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if not self.data_dir.exists():
            self.data_dir.mkdir(parents=True, mode=0o700)   # the owner only: the database and the key file live here
        return f"sqlite:///{self.data_dir / 'zoomcal.db'}"


def get_settings() -> Settings:
    return Settings()
