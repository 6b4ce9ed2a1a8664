"""rssd: a long-running asyncio daemon that keeps SQLite filled with RSS/Atom posts."""

__version__ = "0.1.0"
