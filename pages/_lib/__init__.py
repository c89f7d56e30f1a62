"""Streamlit helpers shared by the pages: the one place for session state, jobs and widgets."""
