"""The few SQL fragments where SQLite and PostgreSQL disagree; everything else is shared.

Kept as data, not as two copies of each query: a repository builds its statement once and
asks the database's dialect for the one piece that differs.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import Struct


class Dialect(Struct, frozen=True):
    name: str
    #: ``IN (...)`` over a JSON array of text passed as the parameter ``{param}``.
    json_text_set: str
    #: The same for a JSON array of integers. (PostgreSQL: made an array and unnested, whose
    #: row count the planner knows; it takes ``jsonb_array_elements``'s for 100, and past a
    #: few thousand rows joined a whole table by hash to look up a few ids: a sequential
    #: scan of fetch_job in every claim, the pace of ``run --once``, bench/README.md.)
    json_int_set: str
    #: Appended to a claim's candidate SELECT: lock the rows, skip those another claim holds.
    skip_locked: str
    #: A statement taking a transaction-scoped lock on the text parameter ``:lock_key``;
    #: empty where the transaction is exclusive already (SQLite's BEGIN IMMEDIATE).
    xact_lock: str
    #: The same for every text of the JSON array parameter ``:lock_keys``, taken in sorted
    #: order (one lock order for every daemon: no deadlock, as long as a writer's
    #: transaction holds one claim: a process claims one batch at a time), in one round
    #: trip. (Tried, not waited for, three daemons' claims kept failing each other's
    #: hosts and retried at once: 124 checks in five minutes, bench/cluster.py.)
    xact_locks: str
    #: Rows ``{alias}`` from the JSON array of objects ``:{param}``: ``{columns}`` are its
    #: columns with their PostgreSQL types, ``{values}`` SQLite's reads of the keys (one
    #: statement for a whole batch of jobs, rssd/repo/transitions.py).
    json_rows: str
    #: Null-safe "differs from" (SQLite's IS NOT; IS DISTINCT FROM needs SQLite 3.39).
    is_distinct: str
    #: "Now" for leases: where several machines share the database, the database's clock
    #: (one clock, so a daemon's skewed clock cannot expire another's live lease); on
    #: SQLite, one machine, the parameter ``:now``.
    clock: str
    #: A lease's expiry, ``:lease_seconds`` after that clock (SQLite: the parameter ``:lease``).
    lease_until: str
    #: ``:{param}`` seconds after that clock (SQLite: the parameter ``:{param}_at``, the
    #: caller's time): a host's next request start, the end of its pause (rssd/repo/hosts.py).
    clock_after: str
    #: Put before an ORDER BY expression to keep the planner off the index on it (SQLite's
    #: documented unary +; PostgreSQL has no + for timestamps and plans such a sort well).
    no_index: str
    #: After rows were copied in with their ids: set the ``{table}``'s id sequence past
    #: them (SQLite's rowids follow by themselves: empty).
    reset_sequence: str
    #: A post's search document, written with the post by its INSERT or UPDATE from the
    #: parameters ``:s_title``, ``:s_body``, ``:s_author`` (rssd/repo/search.py); empty
    #: on SQLite, whose index is a table of its own, kept by triggers and ``sync_in``.
    post_search: str = ""
    #: A webhook message ``d`` whose body (the standard payload) lists the post ``:post_id``.
    announces_post: str = ""
    #: The UTC hour of the day (an integer, 0-23) of the time ``{time}`` (SQLite keeps
    #: times as ISO text, ``HH`` its characters 12-13; PostgreSQL as timestamptz).
    utc_hour: str = "CAST(substr({time}, 12, 2) AS integer)"
    #: Refreshes fetch_job's statistics after many jobs were queued at once. PostgreSQL's
    #: planner, until autovacuum's first ANALYZE (a minute or more), takes a fresh table
    #: of 20,000 due jobs for a handful and sorts them all for every claim's page (38 ms
    #: a page, bench/cluster.py) instead of reading it off the index. SQLite plans by the
    #: index without statistics: nothing.
    analyze_jobs: str = ""

    @property
    def search_table(self) -> bool:
        """Whether the search index is a table of its own, kept beside ``posts`` by
        rssd/repo/search.py (SQLite's FTS5), rather than written into the post's row."""
        return not self.post_search

    def in_json_text(self, param: str) -> str:
        return self.json_text_set.format(param=param)

    def in_json_int(self, param: str) -> str:
        return self.json_int_set.format(param=param)

    def hour_of(self, time: str) -> str:
        return self.utc_hour.format(time=time)

    def after(self, param: str) -> str:
        return self.clock_after.format(param=param)

    def rows_of(self, param: str, alias: str, columns: Sequence[tuple[str, str]]) -> str:
        """``json_rows`` for these (name, PostgreSQL type) columns."""
        return self.json_rows.format(
            param=param,
            alias=alias,
            columns=", ".join(f"{name} {kind}" for name, kind in columns),
            values=", ".join(f"value ->> '$.{name}' AS {name}" for name, _ in columns),
        )


SQLITE = Dialect(
    name="sqlite",
    json_text_set="(SELECT value FROM json_each(:{param}))",
    json_int_set="(SELECT value FROM json_each(:{param}))",
    json_rows="(SELECT {values} FROM json_each(:{param})) AS {alias}",
    skip_locked="",
    xact_lock="",
    xact_locks="",
    is_distinct="IS NOT",
    clock=":now",
    lease_until=":lease",
    clock_after=":{param}_at",
    no_index="+",
    reset_sequence="",
    announces_post=(
        "EXISTS (SELECT 1 FROM json_each(d.body, '$.data.posts') AS e "
        "WHERE json_extract(e.value, '$.id') = :post_id)"
    ),
)

POSTGRES = Dialect(
    name="postgresql",
    json_text_set="(SELECT jsonb_array_elements_text(CAST(:{param} AS jsonb)))",
    json_int_set="(SELECT unnest(CAST(translate(:{param}, '[]', '{{}}') AS bigint[])))",
    json_rows="json_to_recordset(CAST(:{param} AS json)) AS {alias}({columns})",
    skip_locked=" FOR UPDATE OF j SKIP LOCKED",
    xact_lock="SELECT pg_advisory_xact_lock(hashtext(:lock_key))",
    xact_locks=(
        "SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (SELECT k FROM "
        "jsonb_array_elements_text(CAST(:lock_keys AS jsonb)) AS k ORDER BY k) AS sorted"
    ),
    is_distinct="IS DISTINCT FROM",
    clock="now()",
    lease_until="now() + make_interval(secs => :lease_seconds)",
    clock_after="now() + make_interval(secs => :{param})",
    no_index="",
    utc_hour="CAST(extract(hour FROM {time} AT TIME ZONE 'UTC') AS integer)",
    analyze_jobs="ANALYZE fetch_job, content_sources",
    reset_sequence="SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
    "coalesce((SELECT max(id) FROM {table}), 0) + 1, false)",
    # Title, author, text; a placeholder lexeme ("_", never a word of ours) between them,
    # dropped at the end, keeps a phrase from spanning two of them (as FTS5's columns do).
    post_search=(
        "ts_delete(setweight(to_tsvector('simple', :s_title), 'A') || '_:1'::tsvector"
        " || setweight(to_tsvector('simple', :s_author), 'B') || '_:1'::tsvector"
        " || setweight(to_tsvector('simple', :s_body), 'D'), '_')"
    ),
    announces_post=(
        "CAST(d.body AS jsonb) -> 'data' -> 'posts' "
        "@> jsonb_build_array(jsonb_build_object('id', CAST(:post_id AS bigint)))"
    ),
)
