"""Who may send feedback: tokens per user or reviewer from configuration (``COIN_ASSETS_API_TOKENS``).

Format: ``name:role:token`` entries separated by commas, role ``user`` or ``reviewer``. Only a
reviewer's verdict becomes a training label; a user's feedback waits for review.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

ROLES = ("user", "reviewer")


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


def parse_tokens(spec: str | None) -> dict[str, Caller]:
    callers: dict[str, Caller] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or parts[1] not in ROLES or not parts[0] or len(parts[2]) < 8:
            raise ValueError(f"COIN_ASSETS_API_TOKENS entry {parts[0]!r}... must be name:user|reviewer:token "
                             "with a token of at least 8 characters")
        callers[parts[2]] = Caller(parts[0], parts[1])
    return callers


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def identify(callers: dict[str, Caller], token: str | None) -> Caller | None:
    """The caller a token belongs to (constant-time comparison), None for no or an unknown token."""
    if not token:
        return None
    found = None
    for known, caller in callers.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = caller
    return found


def token_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())
