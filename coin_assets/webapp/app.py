"""The Streamlit web app (``streamlit run coin_assets/webapp/app.py``): it talks only to the API."""

from __future__ import annotations

import streamlit as st

from coin_assets.webapp.pages import batch_page, history_page, models_page, predict_page
from coin_assets.webapp.views import sidebar

st.set_page_config(page_title="Coin year", page_icon="🪙", layout="wide")
sidebar()
st.navigation([
    st.Page(predict_page, title="Date a coin", url_path="predict", default=True),
    st.Page(batch_page, title="Many coins", url_path="batch"),
    st.Page(history_page, title="History", url_path="history"),
    st.Page(models_page, title="Models", url_path="models"),
]).run()
