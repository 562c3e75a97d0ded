"""`xe`: a thin client for xapi's command-line protocol (see `main.py`)."""
