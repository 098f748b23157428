"""The web app's pages: date one coin, many coins, history, models."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from coin_assets.webapp.client import ApiError
from coin_assets.webapp.views import (
    client,
    feedback_form,
    results_frame,
    show_crops,
    show_error,
    show_reading,
    show_result,
)

TERMINAL = ("completed", "failed")


def _photo(label: str, key: str):
    """Drag and drop, or the camera."""
    uploaded = st.file_uploader(f"{label} photo", key=f"{key}-file",
                                type=None, help="Drag and drop a photo of the coin's " + label.lower())
    if uploaded is None and st.toggle(f"Use the camera for the {label.lower()}", key=f"{key}-cam-on"):
        uploaded = st.camera_input(f"{label} (camera)", key=f"{key}-cam")
    return (uploaded.name, uploaded.getvalue()) if uploaded is not None else None


def predict_page() -> None:
    st.title("Date a coin")
    st.caption("Send the front and the back of one coin: the production model tells the year it was minted.")
    left, right = st.columns(2)
    with left:
        front = _photo("Front", "front")
    with right:
        back = _photo("Back", "back")
    coin_id = st.text_input("Coin id (optional)", key="coin-id")
    if st.button("Date this coin", type="primary", disabled=not (front and back)):
        try:
            st.session_state["last"] = client().predict(front, back, st.session_state.get("user_id"), coin_id)
            st.session_state["last_front"] = front[1]
        except ApiError as err:
            st.session_state.pop("last", None)
            show_error(err)
    last = st.session_state.get("last")
    if last:
        show_result(last)
        show_reading(st.session_state.get("last_front"), last.get("reading"))
        st.caption(f"request {last['request_id']}")
        show_crops(last["request_id"])
        feedback_form(last["request_id"], "predict", last.get("year"))


def batch_page() -> None:
    st.title("Many coins")
    st.caption("Drop photos named `<coin_id>__front.jpg` / `<coin_id>__back.jpg`, or a zip of them.")
    files = st.file_uploader("Photos or zip", accept_multiple_files=True, key="batch-files")
    if st.button("Submit", type="primary", disabled=not files):
        try:
            answer = client().submit_batch([(f.name, f.getvalue()) for f in files], st.session_state.get("user_id"))
        except ApiError as err:
            show_error(err)
        else:
            st.session_state["batch_id"] = answer["batch_id"]
            for problem in answer.get("rejected", []):
                st.warning(f"{problem.get('name')}: {problem.get('reason')}")
    if st.session_state.get("batch_id"):
        _batch_progress(st.session_state["batch_id"])


@st.fragment(run_every=1.5)
def _batch_progress(batch_id: str) -> None:
    try:
        batch = client().batch(batch_id)
    except ApiError as err:
        show_error(err)
        return
    total, done = batch.get("total", 0), batch.get("done", 0)
    st.progress(done / total if total else 1.0, text=f"batch {batch_id}: {done} / {total} coins done")
    frame = results_frame(batch.get("items", []))
    st.dataframe(frame, hide_index=True, use_container_width=True)
    if total and done >= total:
        st.download_button("Download CSV", frame.to_csv(index=False).encode(), f"batch_{batch_id}.csv",
                           "text/csv", key=f"csv-{batch_id}")


def history_page() -> None:
    st.title("History")
    cols = st.columns(4)
    filters = {
        "user_id": cols[0].text_input("User", value=st.session_state.get("user_id") or ""),
        "status": cols[1].selectbox("Status", ["", "pending", "running", "completed", "failed"]),
        "day": cols[2].text_input("Day (YYYY-MM-DD)"),
        "model_version": cols[3].text_input("Model version"),
    }
    page = st.number_input("Page", min_value=1, value=1, step=1)
    _history_table(filters, int(page))


@st.fragment(run_every=2.0)
def _history_table(filters: dict, page: int) -> None:
    """Refreshes itself every two seconds, so pending requests move on their own."""
    try:
        answer = client().history(page=page, page_size=20, **filters)
    except ApiError as err:
        show_error(err)
        return
    items = answer.get("items", [])
    pending = sum(1 for i in items if i.get("status") not in TERMINAL)
    st.caption(f"{answer.get('total', len(items))} requests · {pending} still pending on this page · "
               f"updated {time.strftime('%H:%M:%S')}")
    st.table(results_frame(items).set_index("request_id"))
    ids = [i["request_id"] for i in items if i.get("status") == "completed"]
    if ids:
        chosen = st.selectbox("Correct a request", [""] + ids, key="history-correct")
        if chosen:
            feedback_form(chosen, "history")


def _versions(models) -> list[dict]:
    if isinstance(models, dict):
        models = models.get("versions") or models.get("models") or []
    return list(models)


def models_page() -> None:
    st.title("Models")
    try:
        versions = _versions(client().models())
    except ApiError as err:
        show_error(err)
        return
    if not versions:
        st.info("No registered model yet: materialize the model chain in the Dagster UI or run `make headless`.")
        return
    rows = []
    for v in versions:
        metrics = v.get("test_metrics") or v.get("metrics") or {}
        rows.append({
            "version": str(v.get("version")),
            "aliases": ", ".join(v.get("aliases") or []),
            "decision": v.get("decision"),
            "reason": v.get("decision_reason") or v.get("reason"),
            **{name: value for name, value in sorted(metrics.items())},
        })
    frame = pd.DataFrame(rows)
    st.dataframe(frame, hide_index=True, use_container_width=True)
    chart_data = frame.dropna(subset=["test_mae"]) if "test_mae" in frame else frame.iloc[0:0]
    if chart_data.empty:
        st.caption("No test MAE recorded yet (versions get one when the promotion step evaluates them).")
    else:
        st.subheader("Test MAE per version (years)")
        st.altair_chart(alt.Chart(chart_data).mark_bar().encode(
            x=alt.X("version:N", sort=None), y=alt.Y("test_mae:Q", title="test MAE (years)"),
            color=alt.Color("aliases:N"), tooltip=["version", "aliases", "test_mae", "reason"]),
            use_container_width=True)
