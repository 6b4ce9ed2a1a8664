"""Repo layer: every SQL statement, written once against the Database interface (db.py)
that SQLite and PostgreSQL implement. No HTTP here."""
