"""Pieces the pages share: the API client of this session, error display, result and chart views."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from coin_assets.core.uploads import YEAR_MAX_PLAUSIBLE, YEAR_MIN
from coin_assets.settings import Settings
from coin_assets.webapp.client import ApiClient, ApiError

RESULT_COLUMNS = ["coin_id", "status", "year", "lower_90", "upper_90", "sigma", "needs_review",
                  "model_version", "error", "request_id"]


def client() -> ApiClient:
    base = st.session_state.get("api_url") or Settings.from_env().api_base_url
    return ApiClient(base, token=st.session_state.get("token") or None)


def sidebar() -> None:
    settings = Settings.from_env()
    with st.sidebar:
        st.text_input("API", value=settings.api_base_url, key="api_url")
        st.text_input("Your name (user id)", key="user_id")
        st.text_input("Feedback token", key="token", type="password",
                      help="Needed to correct an answer: a reviewer's token turns it into a training label.")
        try:
            health = client().health()
            st.success(f"Serving {health.get('model_name', '?')} v{health.get('model_version', '?')}")
        except ApiError as err:
            st.warning(err.message)


def show_error(err: ApiError) -> None:
    st.error(err.message, icon="⚠️")


def interval_chart(year: float, lower: float, upper: float) -> alt.Chart:
    """The 90 % interval as a bar on a year axis, the estimate as a tick."""
    lo, hi = min(lower, year), max(upper, year)
    pad = max(2.0, (hi - lo) * 0.25)
    scale = alt.Scale(domain=[lo - pad, hi + pad], zero=False, nice=False)
    frame = pd.DataFrame({"lower": [lower], "upper": [upper], "year": [year], "row": ["90 % interval"]})
    x_axis = alt.Axis(format="d", title="year")
    band = alt.Chart(frame).mark_bar(size=18, opacity=0.35, color="#b8860b").encode(
        x=alt.X("lower:Q", scale=scale, axis=x_axis), x2="upper:Q", y=alt.Y("row:N", title=None))
    point = alt.Chart(frame).mark_tick(thickness=3, size=30, color="#5a3d00").encode(
        x=alt.X("year:Q", scale=scale), y="row:N", tooltip=["year", "lower", "upper"])
    return (band + point).properties(height=90)


def show_result(result: dict) -> None:
    """Year, interval on a year axis, model version and the review flag of one answer."""
    year = result.get("year")
    if year is None or result.get("error"):
        reason = result.get("error") or ("the model could not read this coin" if result.get("unreadable")
                                         else "no year in the answer")
        st.error(f"This coin could not be dated: {reason}")
        if result.get("needs_review"):
            st.warning("Needs review: a reviewer will look at this coin.")
        return
    st.metric("Minted in", f"{round(year)}",
              help=f"90 % interval {result['lower_90']:.0f} – {result['upper_90']:.0f}, sigma {result['sigma']:.1f}")
    st.markdown(f"**90 % interval:** {result['lower_90']:.0f} – {result['upper_90']:.0f}  ·  "
                f"**model:** {result.get('model_name', '')} v{result.get('model_version', '?')}")
    st.altair_chart(interval_chart(float(year), float(result["lower_90"]), float(result["upper_90"])),
                    use_container_width=True)
    if result.get("needs_review"):
        st.warning("Needs review: the model is unsure about this coin; a reviewer will check it.")


def reading_overlay(photo: bytes, reading: dict | None, max_side: int = 640):
    """The front photo, upright and at most ``max_side`` px, with the region where the year was read drawn on
    it (green when the year was trusted, orange when it was not); None when the photo cannot be opened."""
    import io

    from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

    try:
        img = ImageOps.exif_transpose(Image.open(io.BytesIO(photo))).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    img.thumbnail((max_side, max_side))
    region = (reading or {}).get("region") or []
    if len(region) >= 3:
        points = [(x * img.width, y * img.height) for x, y in region]
        colour = (40, 200, 60) if reading.get("year") is not None else (255, 150, 0)
        ImageDraw.Draw(img).line([*points, points[0]], fill=colour, width=max(2, img.width // 160))
    return img


def show_reading(front: bytes | None, reading: dict | None) -> None:
    """Where on the front the year was read, and the digits with their probabilities."""
    if not reading:
        return
    image = reading_overlay(front, reading) if front else None
    if image is not None:
        st.image(image, caption="where the year was read", width=320)
    if reading.get("digits"):
        probs = " ".join(f"{d}:{p:.0%}" for d, p in zip(reading["digits"], reading.get("digit_probs", []), strict=False))
        st.markdown(f"**Digits read:** `{reading['digits']}` ({probs}) on the {reading.get('view', '')}, "
                    f"confidence {reading.get('confidence', 0):.0%}")
    if reading.get("year") is None:
        st.caption(f"Why no year: {reading.get('reason', '')}")


def show_crops(request_id: str) -> None:
    """The photos as the model saw them (cropped, letterboxed, resized), asked from the API."""
    cols = st.columns(2)
    for col, side in zip(cols, ("front", "back"), strict=True):
        try:
            col.image(client().crop(request_id, side), caption=f"{side} as the model saw it", width=200)
        except ApiError as err:
            col.info(f"{side}: {err.message}")


def feedback_form(request_id: str, key: str, default_year: float | None = None) -> None:
    """Enter the true year → feedback → (for a reviewer) a training label."""
    with st.form(f"feedback-{key}"):
        st.write("Wrong year? Tell us the true one.")
        start = int(round(default_year)) if default_year is not None and YEAR_MIN <= default_year <= YEAR_MAX_PLAUSIBLE else 2000
        true_year = st.number_input("True year", min_value=YEAR_MIN, max_value=YEAR_MAX_PLAUSIBLE, value=start, step=1,
                                    key=f"true-year-{key}")
        sent = st.form_submit_button("Send correction")
    if sent:
        try:
            answer = client().feedback(request_id, int(true_year))
        except ApiError as err:
            show_error(err)
        else:
            status = answer.get("status", "recorded")
            if status == "label_submitted":
                st.success(f"Thank you: year {int(true_year)} recorded. This coin will be used in the next training.")
            else:
                st.success(f"Thank you: year {int(true_year)} recorded ({status}). "
                           "A reviewer will confirm it before it is used in training.")


def results_frame(items: list[dict]) -> pd.DataFrame:
    rows = []
    for item in items:
        result = item.get("result") or {}
        rows.append({
            "coin_id": item.get("coin_id"), "status": item.get("status"),
            "year": result.get("year"), "lower_90": result.get("lower_90"), "upper_90": result.get("upper_90"),
            "sigma": result.get("sigma"), "needs_review": result.get("needs_review"),
            "model_version": result.get("model_version"), "error": item.get("error") or result.get("error"),
            "request_id": item.get("request_id"),
        })
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
