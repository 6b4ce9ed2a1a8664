"""PostgreSQL for the tests: a fresh database per test on the local server, dropped after.

``RSSD_TEST_PG`` names the server (an admin URL; default the local trust-auth one). Tests
needing it skip when no server answers, except where ``RSSD_REQUIRE_PG=1`` (CI) makes that
a failure: there a missing server is a broken machine, not a reason to test less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import psycopg
import pytest
from yarl import URL

ADMIN_URL = os.environ.get("RSSD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _no_server(exc: psycopg.OperationalError) -> NoReturn:
    """The test skips, or fails where ``RSSD_REQUIRE_PG=1`` (the module's doc)."""
    if os.environ.get("RSSD_REQUIRE_PG") == "1":
        raise exc
    pytest.skip(f"no PostgreSQL server answers at {ADMIN_URL}: {exc}")


async def _admin() -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        return await psycopg.AsyncConnection.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _no_server(exc)


def admin_connection(**kwargs: Any) -> psycopg.Connection[tuple[object, ...]]:
    """A blocking connection to the admin database (``kwargs``: psycopg's, e.g. a
    ``context``), for a test that only asks the server itself something."""
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        _no_server(exc)


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create an empty database, yield its URL, drop it (with any connection left)."""
    name = f"rssd_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield str(URL(ADMIN_URL).with_path(f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
