"""rssd: a long-running asyncio daemon that fetches RSS, Atom and JSON feeds into a
database (SQLite, or PostgreSQL shared by several daemons)."""

__version__ = "0.1.0"
#: Where publishers who see rssd in their logs learn what it is (the User-Agent names it).
PROJECT_URL = "https://github.com/rssd/rssd"
