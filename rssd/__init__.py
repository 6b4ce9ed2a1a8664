"""rssd: a long-running asyncio daemon that keeps SQLite filled with RSS/Atom posts."""

__version__ = "0.1.0"
#: Where publishers who see rssd in their logs learn what it is (the User-Agent names it).
PROJECT_URL = "https://github.com/rssd/rssd"
