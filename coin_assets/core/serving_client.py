"""Calls into a running serving API for promotion, rollback and the ``serving_deployment`` asset.

Best-effort by design: a service that is down, slow or misconfigured never fails the Dagster run or
the rollback command that calls it (the service follows the alias by polling anyway). Every function
returns a dict that says what happened.
"""

from __future__ import annotations

import httpx

from coin_assets.settings import Settings

DEFAULT_TIMEOUT = 30.0


def request_reload(settings: Settings | None = None, base_url: str | None = None, token: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> dict:
    """POST /admin/reload: the service checks the production alias now and swaps a new version in.
    Returns the service's report, or ``{"ok": False, "error": ...}``; never raises. Without ``base_url``
    the address and token come from ``settings`` (default: the environment); a caller that gives the
    address gives the token too (None: none configured), and no setting is read."""
    if base_url is None:
        settings = settings or Settings.from_env()
        base_url, token = settings.api_base_url, token or settings.reload_token
    base_url = base_url.rstrip("/")
    if not token:
        return {"ok": False, "error": "COIN_ASSETS_RELOAD_TOKEN not set: not asking the service to reload"}
    try:
        response = httpx.post(f"{base_url}/admin/reload", headers={"X-Reload-Token": token}, timeout=timeout)
    except httpx.HTTPError as err:
        return {"ok": False, "error": f"serving API at {base_url} not reachable: {err}"}
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return {"ok": response.status_code == 200 and not body.get("error"), "status_code": response.status_code, **body}


def serving_health(settings: Settings | None = None, base_url: str | None = None,
                   timeout: float = 5.0) -> dict:
    """GET /health as a dict (``reachable`` False when the service does not answer); never raises."""
    base_url = (base_url or (settings or Settings.from_env()).api_base_url).rstrip("/")
    try:
        response = httpx.get(f"{base_url}/health", timeout=timeout)
        return {"reachable": True, "status_code": response.status_code, **response.json()}
    except (httpx.HTTPError, ValueError) as err:
        return {"reachable": False, "error": f"serving API at {base_url} not reachable: {err}"}
