"""The web app's only window on the platform: the serving API over HTTP.

Every call returns decoded JSON or raises :class:`ApiError`, whose ``message`` is the sentence the
app shows a person (not a photo, too large, no production model yet, service busy, not allowed,
API unreachable). Plain Python: the pages import it, the tests call it without Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

NO_MODEL_HINT = ("No model is in production yet. Materialize the model chain in the Dagster UI "
                 "(http://127.0.0.1:3000) or run `make headless`, then try again.")


@dataclass
class ApiError(Exception):
    status: int  # 0: the API could not be reached
    message: str
    detail: str = ""
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("reason") or body.get("message") or body.get("error") or body
    else:
        detail = body
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    if isinstance(detail, dict):
        return str(detail.get("reason") or detail.get("message") or detail)
    return str(detail)


def error_for(response: httpx.Response) -> ApiError:
    """The person-facing error for a non-2xx answer."""
    status, detail = response.status_code, _detail(response)
    try:
        code = response.json().get("error") if response.content else None
    except (ValueError, AttributeError):
        code = None
    if status == 503:
        retry = response.headers.get("Retry-After")
        try:
            seconds = float(retry) if retry is not None else None
        except ValueError:
            seconds = None
        if code == "log_unavailable":
            return ApiError(status, "The service could not record this request, so it gave no answer. "
                                    "Please retry in a moment.", detail, seconds)
        if code != "not_ready" and retry is not None:
            wait = f" in {seconds:g} s" if seconds is not None else " in a moment"
            return ApiError(status, f"The service is busy. Please retry{wait}.", detail, seconds)
        return ApiError(status, f"{NO_MODEL_HINT} (API: {detail})", detail)
    if status == 413:
        return ApiError(status, f"This photo is too large. {detail}", detail)
    if status == 401:
        return ApiError(status, "Corrections need an identified caller: enter your feedback token "
                                f"in the sidebar. ({detail})", detail)
    if status == 403:
        return ApiError(status, f"This token may not do that. ({detail})", detail)
    if status == 404:
        return ApiError(status, f"Not found: {detail}", detail)
    if status in (400, 415, 422):
        return ApiError(status, f"This upload cannot be used: {detail}", detail)
    return ApiError(status, f"The API answered {status}: {detail}", detail)


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.timeout = timeout

    def _request(self, method: str, path: str, **kw) -> Any:
        headers = kw.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout) as http:
                response = http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as err:
            raise ApiError(0, f"The API at {self.base_url} cannot be reached ({type(err).__name__}). "
                              "Is it running? (`make demo` starts it.)", str(err)) from None
        if response.status_code >= 400:
            raise error_for(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    # ------------------------------------------------------------------ status and models
    def health(self) -> dict:
        return self._request("GET", "/health")

    def models(self) -> Any:
        return self._request("GET", "/models")

    # ------------------------------------------------------------------ one coin
    @staticmethod
    def _pair_files(front: tuple[str, bytes], back: tuple[str, bytes]) -> list:
        return [("front", (front[0], front[1], "application/octet-stream")),
                ("back", (back[0], back[1], "application/octet-stream"))]

    @staticmethod
    def _form(user_id: str | None, coin_id: str | None) -> dict:
        return {k: v for k, v in (("user_id", user_id), ("coin_id", coin_id)) if v}

    def predict(self, front: tuple[str, bytes], back: tuple[str, bytes],
                user_id: str | None = None, coin_id: str | None = None) -> dict:
        """Real-time answer (``POST /predict``)."""
        return self._request("POST", "/predict", files=self._pair_files(front, back),
                             data=self._form(user_id, coin_id))

    def submit(self, front: tuple[str, bytes], back: tuple[str, bytes],
               user_id: str | None = None, coin_id: str | None = None) -> dict:
        """Queue one coin (``POST /predictions/requests``, 202)."""
        return self._request("POST", "/predictions/requests", files=self._pair_files(front, back),
                             data=self._form(user_id, coin_id))

    def request(self, request_id: str) -> dict:
        return self._request("GET", f"/predictions/{request_id}")

    def crop(self, request_id: str, side: str) -> bytes:
        """The model's input for one side, as a PNG."""
        return self._request("GET", f"/predictions/{request_id}/inputs/{side}")

    def feedback(self, request_id: str, year: int, comment: str | None = None) -> dict:
        body: dict = {"year": int(year)}
        if comment:
            body["comment"] = comment
        return self._request("POST", f"/predictions/{request_id}/feedback", json=body)

    # ------------------------------------------------------------------ many coins
    def submit_batch(self, files: list[tuple[str, bytes]], user_id: str | None = None) -> dict:
        """Photos named ``<coin_id>__front|back.<ext>`` and/or zips of them (``POST /predictions/batch``)."""
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        return self._request("POST", "/predictions/batch", files=parts, data=self._form(user_id, None))

    def batch(self, batch_id: str) -> dict:
        return self._request("GET", f"/predictions/batches/{batch_id}")

    def history(self, **filters) -> dict:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return self._request("GET", "/predictions/history", params=params)
