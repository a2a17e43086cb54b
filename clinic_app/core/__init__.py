"""Plumbing every domain package uses: process-wide engines (``runtime``), background work by task
name (``jobs``), the client's address (``client_ip``), the acting user (``middleware``),
structured logs (``logs``) and terminal progress (``progress``)."""
