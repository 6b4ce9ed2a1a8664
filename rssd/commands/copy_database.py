"""``rssd copy-database --to postgresql://...``: move a SQLite database into PostgreSQL.

For users outgrowing one machine: the configured SQLite file is read in one snapshot and
every row copied into an empty PostgreSQL database (its schema created first), then the
row counts of both are compared. Run it with the daemon stopped (its last writes would
otherwise be missing from the copy), then point ``database`` at the URL.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rssd.commands.context import load, reader, run
from rssd.commands.errors import CommandError
from rssd.commands.humanize import plural
from rssd.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from rssd.models.redact import redact, split_userinfo
from rssd.repo.copy import copy_rows, counts
from rssd.repo.db import DatabaseError, is_postgres
from rssd.repo.open import open_database


async def copy(path: Path, to: str) -> dict[str, tuple[int, int]]:
    """Copy; returns table -> (rows in the source, rows in the target)."""
    config = load(path)
    if config.database_path is None:
        raise CommandError("the configured database is not a SQLite file: nothing to copy")
    if not is_postgres(to):
        raise CommandError("--to takes a postgresql:// URL", EXIT_USAGE)
    async with reader(config) as source:
        try:
            target = await open_database(to)
        except DatabaseError as exc:
            raise CommandError(str(exc)) from None
        try:
            already = {table: n for table, n in (await counts(target)).items() if n}
            if already:
                listed = ", ".join(f"{table} ({plural(n, 'row')})" for table, n in already.items())
                raise CommandError(
                    f"{redact(to, keep_user=True)} is not empty: {listed}; "
                    f"copy into an empty database"
                )

            async def progress(table: str, copied: int) -> None:
                print(f"{table}: {plural(copied, 'row')}", file=sys.stderr)

            await copy_rows(source, target, progress)
            before, after = await counts(source), await counts(target)
        finally:
            await target.close()
    return {table: (before[table], after[table]) for table in before}


def main(path: Path, to: str) -> int:
    result = run(copy(path, to))
    width = max(len(table) for table in result)
    for table, (source, target) in result.items():
        mark = "ok" if source == target else "MISMATCH"
        print(f"{table:<{width}}  {source:>9} -> {target:>9}  {mark}")
    if any(source != target for source, target in result.values()):
        print("rssd copy-database: the counts differ; do not switch to the copy", file=sys.stderr)
        return EXIT_FAILURE
    shown = redact(to, keep_user=True)
    if shown == to:
        print(f'copied into {shown}; set database = "{shown}" to use it')
    else:  # never a literal *** to paste; the password belongs in a passfile
        print(
            f'copied into {shown}; set database = "{without_password(to)}" to use it, '
            f"with the password in a passfile (README, Running several daemons)"
        )
    return EXIT_OK


def without_password(url: str) -> str:
    """``url`` with its password left out (of the userinfo and of a ``password=``)."""
    parts = split_userinfo(url)
    if parts is not None:
        scheme, userinfo, rest = parts
        user = userinfo.partition(":")[0]
        url = f"{scheme}{user}@{rest}" if user else f"{scheme}{rest}"
    url = re.sub(r"(?i)([?&])password=[^&#]*(&|(?=#)|$)", r"\1", url)
    return re.sub(r"[?&](?=#|$)", "", url)


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, args.to)
