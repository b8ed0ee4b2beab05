"""The application layer: every operation a person or a job can do, as plain functions over a tenant-scoped
context (`AppContext`: tenant, actor, store, vault, jobs, clock). The CLI, the portal, webhook receivers and
workers are doors into it: they translate input, call one operation, and render its typed result or typed error.

Modules: `users`, `accounts`, `settings`, `sync`, `availability`, `presence`, `push`, `admin`; the context and
the per-process services in `context`.
"""
