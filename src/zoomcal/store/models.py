"""SQLAlchemy 2 models: the central store. Every row belongs to a tenant."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from zoomcal.domain.timeutil import now_utc


class Base(DeclarativeBase):
    pass


class TenantOwned:
    """Rows that belong to one tenant (they have `tenant_id`): tenant-scoped sessions see only their own."""

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


def _now() -> datetime:
    return now_utc()


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    mapping_rules: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    presence_rules: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(TenantOwned, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # bumped in the transaction that changes the person's busy intervals: a process holding them in memory
    # compares it before answering, so it never answers from a view older than another process's commit
    busy_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    role: Mapped[str] = mapped_column(String(10), default="member", server_default="member")   # admin | member
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)     # argon2; None: no local sign-in


class Account(TenantOwned, Base):
    """One linked provider identity; credentials are sealed by the token vault, never stored in clear."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(320), default="")
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="ok")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # the current access token, sealed, shared by every process (refreshed by one of them at a time)
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    access_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # a refresh under way: which process claimed it, and until when (a claim that lapses can be taken over)
    refresh_holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refresh_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # bumped whenever credentials or configuration change: connectors built from an older revision are rebuilt
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the scopes the provider said it granted, at the last token refresh (None: it did not say)
    granted_scopes: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # what a check last learnt of the account (e-mail, zone, role, licence, the scopes granted): a change asks for
    # the account to be linked again
    profile: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class WriteQuota(TenantOwned, Base):
    """Writes made through one account on one UTC day, for providers that cap them (Zoom: 100 meeting
    creates/updates per user per day)."""

    __tablename__ = "write_quotas"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Calendar(TenantOwned, Base):
    __tablename__ = "calendars"
    __table_args__ = (UniqueConstraint("account_id", "remote_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    remote_id: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="calendar")   # "meetings" (Zoom) | "calendar"
    receives_meetings: Mapped[bool] = mapped_column(Boolean, default=False)


class Event(TenantOwned, Base):
    """The canonical event: the merged base every side is compared against."""

    __tablename__ = "events"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    content: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    start_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    end_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    title: Mapped[str] = mapped_column(Text, default="")
    is_meeting: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class Link(TenantOwned, Base):
    """Ties one event to one item in one calendar: the status row for three-way decisions."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("event_id", "calendar_id"),
        Index("ix_links_calendar_remote", "calendar_id", "remote_id", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    remote_id: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    state_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pending: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class RemoteItem(Base):
    """The raw items a calendar listed, as last read: lets a series be rebuilt from a partial change feed."""

    __tablename__ = "remote_items"
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True)
    remote_id: Mapped[str] = mapped_column(String(1100), primary_key=True)
    series_id: Mapped[str] = mapped_column(String(1100), index=True)
    raw: Mapped[dict] = mapped_column(JSON)


class Cursor(Base):
    __tablename__ = "cursors"
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class SyncLease(Base):
    """Who is syncing a calendar right now: one run per calendar at a time, across processes and machines."""

    __tablename__ = "sync_leases"
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the fencing token: raised by every take-over; a status write carries the holder's and is refused when it
    # is no longer the lease's (the lease was lost while the holder was paused or slow)
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SyncRun(TenantOwned, Base):
    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(40), default="manual")
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class SyncLogEntry(TenantOwned, Base):
    __tablename__ = "sync_log"
    __table_args__ = (Index("ix_sync_log_event", "tenant_id", "event_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), nullable=True,
                                              index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    level: Mapped[str] = mapped_column(String(10), default="info")
    action: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)   # what a decision or write rested on
    # to the microsecond, so an event's history orders its lines and the audit entries beside them
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 default=lambda: datetime.now(UTC))


class ReviewItem(TenantOwned, Base):
    __tablename__ = "review_queue"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="conflict")    # conflict | mass_delete
    field: Mapped[str] = mapped_column(String(200), default="")
    zoom_value: Mapped[dict | list | str | None] = mapped_column(JSON, nullable=True)
    calendar_value: Mapped[dict | list | str | None] = mapped_column(JSON, nullable=True)
    chosen: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class _AuditColumns:
    """One entry of a tenant's audit trail: number `seq` in the tenant's hash chain, and the hashes that chain it
    (zoomcal.domain.audit)."""

    seq: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditEntry(TenantOwned, _AuditColumns, Base):
    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("tenant_id", "seq", name="uq_audit_log_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class AuditArchived(TenantOwned, _AuditColumns, Base):
    """Entries past the retention period, moved out of the live trail unchanged (the chain runs on through them)."""

    __tablename__ = "audit_archive"
    __table_args__ = (UniqueConstraint("tenant_id", "seq", name="uq_audit_archive_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    archived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BusyInterval(TenantOwned, Base):
    """A derived busy span of one user: the availability truth (rebuilt per event as the event changes)."""

    __tablename__ = "busy_intervals"
    __table_args__ = (Index("ix_busy_user_start", "user_id", "start_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(12))


class AvailabilitySettings(Base):
    __tablename__ = "availability_settings"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # {"mon": [["09:00", "17:00"]], ...}; a missing day has no working hours
    working_hours: Mapped[dict] = mapped_column(JSON, default=dict)
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0)
    excluded_calendars: Mapped[list] = mapped_column(JSON, default=list)
    rolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PresenceState(Base):
    """What zoomcal last did to a user's Zoom presence, so it can restore and never fight the user."""

    __tablename__ = "presence_state"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    last_written: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_written_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    restore_to: Mapped[str | None] = mapped_column(String(40), nullable=True)
    manual_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    rules: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class SyncDue(TenantOwned, Base):
    """A person whose sync is due, marked durably by a notification, a timer or an operation. Marks coalesce
    (one row per person); the run that started after the latest mark clears it, so a crash keeps it."""

    __tablename__ = "sync_due"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    marks: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    first_marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # the earliest provider-side change time the marks carried (a webhook's timestamp), for propagation latency
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the calendars the notifications named (",3,7,"), so only they are listed; NULL: all (a timer, an operation)
    calendars: Mapped[str | None] = mapped_column(Text, nullable=True)


class PushSubscription(TenantOwned, Base):
    """A provider's push channel for one calendar (Google `events.watch`, a Graph subscription): what to verify a
    notification against, and when to renew it."""

    __tablename__ = "push_subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"), nullable=True)
    provider: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[str] = mapped_column(String(300), unique=True)
    resource_id: Mapped[str] = mapped_column(String(1000), default="")
    token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)     # sealed by the vault
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    renewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PropagationSample(TenantOwned, Base):
    """How long one change took to reach the other side: a provider's change time to zoomcal's confirmed write
    (kind "sync"), or a calendar change to the Zoom presence PUT (kind "presence")."""

    __tablename__ = "propagation"
    __table_args__ = (Index("ix_propagation_kind_at", "kind", "written_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(20), default="")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ms: Mapped[int] = mapped_column(Integer)


class MailSettings(TenantOwned, Base):
    """How a tenant's e-mail invitations leave: its SMTP server (the password sealed by the vault)."""

    __tablename__ = "mail_settings"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=587)
    security: Mapped[str] = mapped_column(String(10), default="starttls")      # starttls | tls | none
    username: Mapped[str] = mapped_column(String(320), default="")
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # sealed {"password": ...}
    sender: Mapped[str] = mapped_column(String(320))


class Invitation(TenantOwned, Base):
    """The invitations zoomcal sends by e-mail for one event (iTIP, RFC 5546): who was invited, at which
    SEQUENCE, what the last REQUEST said, and each attendee's answer."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(255), unique=True)
    organizer: Mapped[str] = mapped_column(String(320))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    sent_hash: Mapped[str] = mapped_column(String(64), default="")     # what the last REQUEST said; "" none yet
    sent_content: Mapped[dict] = mapped_column(JSON, default=dict)      # ...in full (a CANCEL repeats it)
    attendees: Mapped[dict] = mapped_column(JSON, default=dict)         # e-mail -> answer (needs_action, ...)
    # answers for single occurrences of a series: original start (canonical) -> e-mail -> answer
    occurrence_answers: Mapped[dict | None] = mapped_column(JSON, nullable=True, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="active")   # active | cancelled
    wait_for_join: Mapped[bool] = mapped_column(Boolean, default=False)  # a Zoom booking: send once it has a link
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class OutboxMessage(TenantOwned, Base):
    """One e-mail to send, written in the transaction that decided it; its key makes a decision repeated after a
    crash the same message, and its Message-ID is the key's, so a copy sent again is recognisably the same."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("tenant_id", "key"), Index("ix_outbox_status", "status", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    event_id: Mapped[str] = mapped_column(String(64), default="")
    recipient: Mapped[str] = mapped_column(String(320))
    method: Mapped[str] = mapped_column(String(20))                     # REQUEST | CANCEL
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text)                          # the whole RFC 5322 message
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)   # sending since
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class MeetingPoll(TenantOwned, Base):
    """A poll attached to an event while scheduling: created on the Zoom meeting once the meeting exists."""

    __tablename__ = "meeting_polls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    poll: Mapped[dict] = mapped_column(JSON)
    zoom_poll_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="waiting")    # waiting | created | failed
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContactSource(TenantOwned, Base):
    """A linked account read by the contacts service: where its listing stands and what it was granted."""

    __tablename__ = "contact_sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="ok")         # ok | error | needs_reauth
    error: Mapped[str] = mapped_column(Text, default="")
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    records: Mapped[int] = mapped_column(Integer, default=0)
    granted: Mapped[list | None] = mapped_column(JSON, nullable=True)      # the scopes the provider last granted
    scopes_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the directory its listing is of, as the source named it (sources of one directory are read once)
    directory: Mapped[str | None] = mapped_column(String(200), nullable=True)
    shared_with: Mapped[int | None] = mapped_column(Integer, nullable=True)   # the account whose listing it shares


class ContactRecordRow(TenantOwned, Base):
    """One record as its source last listed it (zoomcal.connectors.contacts.ContactRecord, as JSON)."""

    __tablename__ = "contact_records"
    __table_args__ = (UniqueConstraint("source_id", "record_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("contact_sources.id", ondelete="CASCADE"), index=True)
    record_id: Mapped[str] = mapped_column(String(500))
    provider: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class ContactPerson(TenantOwned, Base):
    """One human in the tenant's directory, as the last resolution made them (rebuilt from the records)."""

    __tablename__ = "contact_people"
    __table_args__ = (UniqueConstraint("tenant_id", "person_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    primary_email: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(Text, default="")
    name_from: Mapped[str] = mapped_column(String(600), default="")
    emails: Mapped[list] = mapped_column(JSON, default=list)
    records: Mapped[list] = mapped_column(JSON, default=list)
    kinds: Mapped[list] = mapped_column(JSON, default=list)
    groups: Mapped[list] = mapped_column(JSON, default=list)
    zoom_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    presence: Mapped[str | None] = mapped_column(String(40), nullable=True)
    presence_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    invitable: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


class ContactDecision(TenantOwned, Base):
    """An admin's word on the directory, kept across syncs: merge (a with b), split (a stands alone), no_invite
    (address a is never invited)."""

    __tablename__ = "contact_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    a: Mapped[str] = mapped_column(String(600))
    b: Mapped[str] = mapped_column(String(600), default="")
    actor: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PortalSession(TenantOwned, Base):
    """A person signed in to the portal. The id is the SHA-256 of the cookie's token (the token itself is never
    stored); `csrf` is the token every form of the session carries."""

    __tablename__ = "portal_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInLink(TenantOwned, Base):
    """A one-time sign-in link (the id is the SHA-256 of its token): used once, or not after `expires_at`."""

    __tablename__ = "sign_in_links"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingSignIn(TenantOwned, Base):
    """An account link waiting for the provider's sign-in page to send the browser back (the id is the SHA-256 of
    the request's `state`): who asked, and — sealed — for whom, which provider, its options and secrets, and the
    PKCE verifier. Used once, or not after `expires_at`."""

    __tablename__ = "pending_sign_ins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(400))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInIdentity(TenantOwned, Base):
    """A Google or Microsoft account that signs a person in: the issuer and subject of its ID tokens, bound at the
    person's first sign-in with it (by their verified address); from then on the subject decides, whatever address
    the account later shows."""

    __tablename__ = "sign_in_identities"
    issuer: Mapped[str] = mapped_column(String(400), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))       # the address it had when bound
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInFailure(Base):
    """Failed sign-ins counted per address and per client since `since` (the throttle's window)."""

    __tablename__ = "sign_in_failures"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
