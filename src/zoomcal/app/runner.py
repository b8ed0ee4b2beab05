"""Where and when jobs run.

Two runners serve the same durable work (the due marks in the store, `zoomcal.app.due`) with the same jobs
(`zoomcal.app.jobs`):

- **Embedded** (the default with SQLite; nothing to install): a loop inside the sync or web process. It
  wakes at once on its own process's marks, looks at the store every second for marks other processes made (a CLI
  command, another process's webhook), retries failed people with back-off, and runs the periodic work on its
  intervals.
- **procrastinate** (PostgreSQL): worker processes on any number of machines. A due mark defers a job
  with a queueing lock and a lock per person, so at most one job per person waits and one runs at a time; failed
  jobs retry with exponential back-off; periodic jobs (reconciliation, the sweep that re-queues marks a lost job
  left behind and retries jobs of dead workers, token refresh, push channel renewal, presence due times) are
  deferred once per period whichever worker sees it first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url

from zoomcal.app import audit, contacts, invitations, jobs, polls
from zoomcal.app.context import Services
from zoomcal.domain.timeutil import now_utc
from zoomcal.logging import get_logger
from zoomcal.metrics import JOBS, JOBS_RUNNING

log = get_logger("zoomcal.runner")

SWEEP_AFTER = timedelta(seconds=30)          # a due mark no job took for this long is queued again


@dataclass
class Intervals:
    """Seconds between periodic jobs."""

    reconcile: float = 900.0
    tokens: float = 300.0
    channels: float = 600.0
    presence: float = 30.0
    audit: float = 3600.0                     # audit retention: entries past it move to the archive
    mail: float = 15.0                        # e-mail invitations waiting in the outbox are sent
    polls: float = 15.0                       # polls attached while scheduling go onto meetings that now exist
    contacts: float = 3600.0                  # contact sources are read and the directory resolved
    checks: float = 6 * 3600.0                # every account is checked: credentials, profile, scopes
    poll: float = 1.0                         # embedded: how often the store is looked at for others' marks

    @classmethod
    def from_settings(cls, settings: Any) -> Intervals:
        return cls(reconcile=max(10.0, float(getattr(settings, "reconcile_minutes", 15)) * 60))


# --- embedded ----------------------------------------------------------------------------------------------

@dataclass
class EmbeddedRunner:
    services: Services
    intervals: Intervals = field(default_factory=Intervals)
    tenant: str | None = None                                 # serve this tenant only (default: every tenant)
    only: str | None = None                                   # serve this one person only
    presence: bool = True
    on_outcome: Callable[[jobs.SyncOutcome], None] | None = None
    on_error: Callable[[str, Exception], None] | None = None
    on_pair: Callable[[Any], None] | None = None
    on_change: Callable[[dict[str, Any]], None] | None = None
    clock: Callable[[], float] = time.monotonic                # seconds: periods and back-off are timed by it
    concurrency: int | None = None                            # people served at once (default: the settings')
    _next: dict[str, float] = field(default_factory=dict)
    # a person backing off: (until, attempts made, the soonest a new mark may run them again)
    _backoff: dict[tuple[str, str], tuple[float, int, float]] = field(default_factory=dict)
    _marks: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)   # the mark a last run read
    _presence_since: datetime | None = None

    def _due_now(self, name: str, now: float, every: float) -> bool:
        if self._next.get(name, 0.0) > now:
            return False
        self._next[name] = now + every
        return True

    async def step(self) -> list[jobs.SyncOutcome]:
        """Run whatever periodic work is due (it may mark people), then serve every due mark whose back-off
        passed."""
        now = self.clock()
        await self._periodic(now)
        serve = []
        for mark in await asyncio.to_thread(jobs.overdue, self.services, timedelta(0), self.tenant):
            tenant = self._tenant_name(mark.tenant_id)
            if tenant is None or (self.only and mark.email != self.only):
                continue
            key = (tenant, mark.email)
            until, _attempts, soonest = self._backoff.get(key, (0.0, 0, 0.0))
            seen = (mark.marks, mark.raw_marked_at)
            if until > now and (seen == self._marks.get(key) or soonest > now):
                continue        # backing off: a new mark cuts it short, down to the first rung after the failure
            self._marks[key] = seen
            serve.append(key)
        at_once = asyncio.Semaphore(self.concurrency or self.services.settings.sync_concurrency)

        async def one(tenant: str, email: str) -> jobs.SyncOutcome | None:
            async with at_once:
                return await self._sync(tenant, email)

        return [o for o in await asyncio.gather(*(one(*key) for key in serve)) if o is not None]

    def _tenant_name(self, tenant_id: int) -> str | None:
        return dict(self.services.tenants()).get(tenant_id)

    async def _sync(self, tenant: str, email: str) -> jobs.SyncOutcome | None:
        key = (tenant, email)
        JOBS.labels(task="sync", outcome="started").inc()
        JOBS_RUNNING.labels(task="sync").inc()
        try:
            outcome = await jobs.sync_person(self.services, tenant, email, presence=self.presence,
                                             on_pair=self.on_pair, on_change=self.on_change)
        except jobs.RetryLater as exc:
            self._back_off(key, exc)
            JOBS.labels(task="sync", outcome="retried").inc()
            return None
        except Exception as exc:    # noqa: BLE001 — one person's failure never stops the loop
            self._back_off(key, exc)
            JOBS.labels(task="sync", outcome="failed").inc()
            log.error("sync_job_failed", tenant=tenant, error=f"{type(exc).__name__}: {exc}")
            if self.on_error is not None:
                self.on_error(email, exc)
            return None
        finally:
            JOBS_RUNNING.labels(task="sync").dec()
        self._backoff.pop(key, None)
        JOBS.labels(task="sync", outcome="succeeded").inc()
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def _back_off(self, key: tuple[str, str], exc: BaseException) -> None:
        attempts = self._backoff.get(key, (0.0, 0, 0.0))[1]
        now = self.clock()
        self._backoff[key] = (now + jobs.retry_after(exc, attempts), attempts + 1, now + jobs.first_retry(exc))

    async def _periodic(self, now: float) -> None:
        work: list[tuple[str, float, Callable[[], Any]]] = [
            ("reconcile", self.intervals.reconcile,
             lambda: asyncio.to_thread(_mark_everyone, self.services, self.tenant)),
            ("tokens", self.intervals.tokens, lambda: jobs.refresh_tokens(self.services, tenant=self.tenant)),
            ("channels", self.intervals.channels, lambda: jobs.renew_channels(self.services, tenant=self.tenant)),
            ("audit", self.intervals.audit,
             lambda: asyncio.to_thread(audit.apply_retention, self.services, tenant=self.tenant)),
            ("mail", self.intervals.mail, lambda: invitations.deliver_all(self.services, tenant=self.tenant)),
            ("polls", self.intervals.polls, lambda: polls.attach_all(self.services, tenant=self.tenant)),
            ("contacts", self.intervals.contacts, lambda: contacts.sync_all(self.services, tenant=self.tenant)),
            ("checks", self.intervals.checks, lambda: jobs.check_accounts(self.services, tenant=self.tenant)),
        ]
        if self.presence:
            work.append(("presence", self.intervals.presence, self._presence_tick))
        for name, every, run in work:
            if name not in self._next:          # the first round starts the clocks (reconcile: the first
                self._next[name] = now + (0.0 if name == "reconcile" else every)   # round syncs everyone)
            if self._due_now(name, now, every):
                try:
                    await run()
                    JOBS.labels(task=name, outcome="succeeded").inc()
                except Exception as exc:    # noqa: BLE001 — periodic work is retried at its next period
                    JOBS.labels(task=name, outcome="failed").inc()
                    log.error("periodic_job_failed", task=name, error=f"{type(exc).__name__}: {exc}")

    async def _presence_tick(self) -> None:
        until = now_utc()
        since = self._presence_since or until - timedelta(seconds=self.intervals.presence)
        self._presence_since = until
        await jobs.presence_tick(self.services, since, until, tenant=self.tenant)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set: a mark made by this process wakes the loop at once, others' within a poll."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.step()
            take = getattr(self.services.jobs, "take", None)
            if take is None:
                await asyncio.sleep(self.intervals.poll)
                continue
            # a mark wakes the loop at once (nothing is waited for: a burst that arrives during the run that follows
            # is one more run, as the marks coalesce in the store)
            woken = await asyncio.to_thread(take, self.intervals.poll, 0.0)
            for tenant in sorted({j.args.get("tenant") for j in woken if j.name == "channels"}):
                if self.tenant in (None, tenant):     # a provider asked for a channel to be renewed or recreated
                    try:
                        await jobs.renew_channels(self.services, tenant=tenant)
                    except Exception as exc:    # noqa: BLE001 — the periodic renewal tries again
                        log.error("channel_renewal_failed", error=f"{type(exc).__name__}: {exc}")


def _mark_everyone(services: Services, tenant: str | None = None) -> int:
    from zoomcal.app import due
    from zoomcal.app.context import SYSTEM

    return sum(len(due.mark_all(services.context(t, SYSTEM), "reconcile")) for _id, t in services.tenants()
               if tenant in (None, t))


class Background:
    """The embedded runner on its own thread and event loop, started and stopped by a host (the web process with
    SQLite): the web app's loop only answers requests."""

    def __init__(self, services: Services, **kwargs: Any):
        self.runner = EmbeddedRunner(services, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            self._stop = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self.runner.run(self._stop))
            finally:
                loop.run_until_complete(self.runner.services.aclose())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="zoomcal-jobs", daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)


# --- procrastinate (PostgreSQL) ----------------------------------------------------------------------------

def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL of the store as libpq takes it."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def uses_workers(settings: Any) -> bool:
    """Whether due marks go to procrastinate workers (PostgreSQL, unless told to run embedded)."""
    return settings.uses_workers()


def lock_key(tenant: str, user: str) -> str:
    return f"zoomcal.sync:{tenant}:{user}"


def _sync_task(app: Any, key: str, after: float | None = None):
    """The person's sync task with their lock and queueing lock (at most one running, one waiting); with `after`,
    scheduled that many seconds from now."""
    return app.configure_task("zoomcal.sync", lock=key, queueing_lock=key, schedule_in=None if after is None else
                              {"milliseconds": int(max(0.0, after) * 1000)})


def build_app(services: Services, *, periodic: bool = True):
    """The procrastinate app over the store's PostgreSQL database, with zoomcal's tasks bound to `services`
    (without the periodic schedule when `periodic` is false: the tasks can still be deferred by hand)."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(services.settings.resolved_database_url()))
    app = procrastinate.App(connector=connector)
    intervals = Intervals.from_settings(services.settings)

    # no procrastinate retry: a failed job queues its own follow-up. Retrying the job itself fails while a newer
    # job for the person waits (the queueing lock), and leaves it `doing` on a live worker, holding the person's
    # lock for good.
    @app.task(name="zoomcal.sync")
    async def sync_task(tenant: str, user: str, attempt: int = 0, soonest: float = 0.0) -> None:
        JOBS.labels(task="sync", outcome="started").inc()
        JOBS_RUNNING.labels(task="sync").inc()
        try:
            await jobs.sync_person(services, tenant, user)
        except Exception as exc:
            JOBS.labels(task="sync", outcome="retried").inc()
            await asyncio.to_thread(follow_up, app, tenant, user, exc, attempt)
            raise
        finally:
            JOBS_RUNNING.labels(task="sync").dec()
        JOBS.labels(task="sync", outcome="succeeded").inc()

    minutes = max(1, int(intervals.reconcile // 60))

    def every(cron: str, name: str):
        return app.periodic(cron=cron, periodic_id=name) if periodic else (lambda task: task)

    @every(f"*/{minutes} * * * *", "reconcile")
    @app.task(name="zoomcal.reconcile", queueing_lock="zoomcal.reconcile")
    async def reconcile_task(timestamp: int) -> None:
        await asyncio.to_thread(_mark_everyone, services)

    @every("* * * * * */10", "sweep")
    @app.task(name="zoomcal.sweep", queueing_lock="zoomcal.sweep")
    async def sweep_task(timestamp: int) -> None:
        await sweep(app, services)

    @every("*/5 * * * *", "tokens")
    @app.task(name="zoomcal.refresh_tokens", queueing_lock="zoomcal.refresh_tokens")
    async def tokens_task(timestamp: int) -> None:
        await jobs.refresh_tokens(services)

    @every("*/10 * * * *", "channels")
    @app.task(name="zoomcal.renew_channels", queueing_lock="zoomcal.renew_channels")
    async def channels_task(timestamp: int) -> None:
        await jobs.renew_channels(services)

    @every("17 * * * *", "audit")
    @app.task(name="zoomcal.audit_retention", queueing_lock="zoomcal.audit_retention")
    async def audit_task(timestamp: int) -> None:
        await asyncio.to_thread(audit.apply_retention, services)

    @every("* * * * *", "mail")
    @app.task(name="zoomcal.mail", queueing_lock="zoomcal.mail")
    async def mail_task(timestamp: int) -> None:
        await invitations.deliver_all(services)

    @every("* * * * *", "polls")
    @app.task(name="zoomcal.polls", queueing_lock="zoomcal.polls")
    async def polls_task(timestamp: int) -> None:
        await polls.attach_all(services)

    @every("41 * * * *", "contacts")
    @app.task(name="zoomcal.contacts", queueing_lock="zoomcal.contacts")
    async def contacts_task(timestamp: int) -> None:
        await contacts.sync_all(services)

    @every("23 */6 * * *", "checks")
    @app.task(name="zoomcal.check_accounts", queueing_lock="zoomcal.check_accounts")
    async def checks_task(timestamp: int) -> None:
        await jobs.check_accounts(services)

    @every("* * * * * */30", "presence")
    @app.task(name="zoomcal.presence", queueing_lock="zoomcal.presence")
    async def presence_task(timestamp: int) -> None:
        until = datetime.fromtimestamp(timestamp, now_utc().tzinfo)
        await jobs.presence_tick(services, until - timedelta(seconds=30), until)

    return app


async def sweep(app: Any, services: Services, after: timedelta = SWEEP_AFTER) -> dict[str, int]:
    """Jobs of workers that stopped beating (killed) are retried; marks no job served for `after` (a defer lost
    with its process, a job given up after its retries) are queued again."""
    retried = 0
    silent = max(5.0, float(getattr(services.settings, "lease_seconds", 45.0)))
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=silent):
        try:
            await app.job_manager.retry_job(job)
        except Exception:   # noqa: BLE001 — a newer job for the same person already waits (its queueing lock):
            # end the dead one instead, so its lock no longer holds the waiting one back; the mark it served stays
            from procrastinate.jobs import Status

            await app.job_manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
        retried += 1
    queued = 0
    tenants = dict(services.tenants())
    for mark in await asyncio.to_thread(jobs.overdue, services, after):
        tenant = tenants.get(mark.tenant_id)
        if tenant is not None and await defer_sync_async(app, tenant, mark.email):
            queued += 1
    return {"retried": retried, "queued": queued}


async def defer_sync_async(app: Any, tenant: str, user: str) -> bool:
    """Queue a sync job for this person (the sweep's reminder) -> whether one was queued; one that waits already,
    back-off included, will serve the mark."""
    from procrastinate.exceptions import AlreadyEnqueued

    key = lock_key(tenant, user)
    try:
        await _sync_task(app, key).defer_async(tenant=tenant, user=user)
    except AlreadyEnqueued:
        return False
    JOBS.labels(task="sync", outcome="queued").inc()
    return True


def defer_sync(app: Any, tenant: str, user: str) -> bool:
    """Queue a sync job for this person because of a new mark -> whether a job was queued. One that waits already
    sees the mark; one that waits out a back-off is queued again to run now (what it waited for may be what
    changed)."""
    from procrastinate.exceptions import AlreadyEnqueued

    key = lock_key(tenant, user)
    try:
        _sync_task(app, key).defer(tenant=tenant, user=user)
    except AlreadyEnqueued:
        return _cut_back_off(app, key)
    JOBS.labels(task="sync", outcome="queued").inc()
    return True


def follow_up(app: Any, tenant: str, user: str, exc: BaseException, attempt: int) -> bool:
    """A sync job failed: queue the person's next one after the back-off (`jobs.retry_after`) -> whether it was
    queued (a job waiting already serves the mark: it came with news)."""
    from procrastinate.exceptions import AlreadyEnqueued

    key = lock_key(tenant, user)
    try:
        _sync_task(app, key, jobs.retry_after(exc, attempt)).defer(
            tenant=tenant, user=user, attempt=attempt + 1, soonest=time.time() + jobs.first_retry(exc))
        return True
    except AlreadyEnqueued:
        return False


def _cut_back_off(app: Any, key: str) -> bool:
    """The person's job waiting out a back-off runs sooner: at once, or at the first rung after its failure
    (never sooner, so a failing person is not run on every notification), with its attempts kept -> whether one
    was cut."""
    from procrastinate.exceptions import AlreadyEnqueued

    now = time.time()
    cut = False
    for job in app.job_manager.list_jobs(queueing_lock=key, status="todo"):
        if job.scheduled_at is None or job.scheduled_at.timestamp() <= now:
            continue
        soonest = float(job.task_kwargs.get("soonest") or 0.0)
        if soonest >= job.scheduled_at.timestamp() or not app.job_manager.cancel_job_by_id(job.id, delete_job=True):
            continue
        try:
            _sync_task(app, key, soonest - now).defer(**job.task_kwargs)
            cut = True
        except AlreadyEnqueued:     # another process queued one meanwhile: it serves the mark
            pass
    return cut


class WorkerJobs:
    """The job queue of a process whose jobs run on procrastinate workers: a sync job per person, deferred with
    its queueing lock (a job already waiting for that person takes the new mark too)."""

    def __init__(self, services: Services):
        self.services = services
        self._app = None
        self._lock = threading.Lock()

    def app(self):
        with self._lock:
            if self._app is None:
                app = build_app(self.services)
                app.open()
                self._app = app
            return self._app

    def defer(self, name: str, **args: Any) -> None:
        from procrastinate.exceptions import AlreadyEnqueued

        try:
            if name == "channels":      # a provider asked for a channel to be renewed: the renewal job, now
                self.app().configure_task("zoomcal.renew_channels", queueing_lock="zoomcal.renew_channels").defer(
                    timestamp=int(time.time()))
                return
            if name == "sync":
                defer_sync(self.app(), args["tenant"], args["user"])
        except AlreadyEnqueued:
            pass
        except Exception as exc:    # noqa: BLE001 — the mark is durable: the sweep queues it again
            log.warning("defer_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


def apply_schema(services: Services) -> bool:
    """Create procrastinate's tables in the store's database when they are missing -> whether it did."""
    from sqlalchemy import inspect

    if not services.db.engine.dialect.name == "postgresql":
        return False
    if "procrastinate_jobs" in inspect(services.db.engine).get_table_names():
        return False
    app = build_app(services)
    with app.open():
        app.schema_manager.apply_schema()
    return True


def has_schema(services: Services) -> bool:
    from sqlalchemy import inspect

    return "procrastinate_jobs" in inspect(services.db.engine).get_table_names()


def worker_problem(services: Services) -> str | None:
    """Why this process cannot be a worker ("sqlite": workers share a PostgreSQL database; "no_queue": the
    database has no job queue yet), or None."""
    if services.db.engine.dialect.name != "postgresql":
        return "sqlite"
    if not has_schema(services):
        return "no_queue"
    return None


async def run_worker(services: Services, *, concurrency: int = 4, wait: bool = True, name: str | None = None,
                     install_signal_handlers: bool = True, periodic: bool = True) -> None:
    """A procrastinate worker serving zoomcal's jobs until stopped (or, with wait=False, until the queue is
    empty)."""
    app = build_app(services, periodic=periodic)
    lease = max(5.0, float(services.settings.lease_seconds))
    with app.open():      # the synchronous side: jobs that mark people due defer through it
        services.jobs = _OpenWorkerJobs(services, app)
        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency, wait=wait, name=name,
                                       install_signal_handlers=install_signal_handlers,
                                       update_heartbeat_interval=max(1.0, lease / 6), stalled_worker_timeout=lease)


class _OpenWorkerJobs(WorkerJobs):
    def __init__(self, services: Services, app: Any):
        super().__init__(services)
        self._app = app

    def close(self) -> None:    # the worker closes its own app
        pass
