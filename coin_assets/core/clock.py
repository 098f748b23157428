"""The package's one clock: now, in UTC. Every stored or reported time is an aware UTC datetime from
here (or its ISO text, ``utcnow().isoformat(timespec=...)``); tests that need another time pass one in."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """Now, as an aware datetime in UTC."""
    return datetime.now(timezone.utc)
