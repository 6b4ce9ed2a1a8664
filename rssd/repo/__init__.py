"""Repo layer: thin raw-SQL repositories over one aiosqlite connection. No HTTP here."""
