"""A Streamlit web app for people: it only talks to the serving API over HTTP (see client.py)."""
