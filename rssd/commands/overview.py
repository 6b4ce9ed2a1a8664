"""What ``rssd status`` shows, as values: one Assessment per source and the Overview of
them all. Computed by rssd/commands/status.py, printed by rssd/commands/status_view.py;
a module of their own so that neither of those needs the other's."""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec import Struct, field

from rssd.clock import parse_iso
from rssd.models.source_state import State
from rssd.repo.config_versions import Synced, differing_keys
from rssd.repo.daemons import GONE_AFTER, DaemonRow
from rssd.repo.queries import SourceStatus


class Assessment(Struct, frozen=True):
    """One source's row: the database's facts plus the state and next due derived here."""

    row: SourceStatus
    state: State
    fetching: bool  # an ONGOING job exists right now
    next_due: datetime | None  # None: disabled, or gone until its config entry changes
    #: The interval planned for the source's next fetch, and why (rssd.daemon.schedule.Reason).
    interval: timedelta | None = None
    reason: str | None = None


class Overview(Struct, frozen=True):
    """Everything ``rssd status`` prints, computed at ``now``."""

    assessments: list[Assessment]
    #: Feeds of config.toml the database does not list yet: the daemon adds them when it
    #: (re)loads the config; until then they have no id and no row.
    not_in_database: list[str]
    now: datetime
    #: Why config.toml does not validate (empty when it does): shown above the rest.
    config_errors: tuple[str, ...] = ()
    #: The daemons working on the database (several on PostgreSQL) and the synced config.
    daemons: list[DaemonRow] = field(default_factory=list)
    synced: Synced | None = None
    config_hash: str | None = None  # this config.toml's
    shared: bool = False  # a database several daemons may share (PostgreSQL)
    #: The keys this config.toml differs in from the synced version (when both are known).
    differs_in: tuple[str, ...] = ()
    #: Per-key digests of the config versions the cluster synced, by hash (those in view).
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The parts a lock kept from being read in time (``daemons``, ``config``,
    #: ``sources``, ``hosts``): shown as unknown, not as empty.
    unread: tuple[str, ...] = ()

    def gone(self, daemon: DaemonRow) -> bool:
        """Silent for longer than a lease: killed, or cut off (its jobs are back with the
        others); forgotten by the daemons' housekeeping within about two hours."""
        return parse_iso(daemon.heartbeat_at) < self.now - GONE_AFTER

    def waiting(self, daemon: DaemonRow) -> float | None:
        """How long a live daemon has been waiting on the database (a lock), as of now;
        None: it is not (at its last heartbeat)."""
        if daemon.database_wait_since is None or self.gone(daemon):
            return None
        return max(0.0, (self.now - parse_iso(daemon.database_wait_since)).total_seconds())

    def drifting(self) -> list[DaemonRow]:
        """Live daemons running another config than the synced one (config.drift)."""
        if self.synced is None:
            return []
        synced = self.synced.config_hash
        return [d for d in self.daemons if d.config_hash not in (None, synced) and not self.gone(d)]

    def daemon_differs_in(self, daemon: DaemonRow) -> list[str]:
        """The keys a daemon's config differs in from the synced one ([]: the same, or
        unknown)."""
        if self.synced is None or daemon.config_hash is None:
            return []
        mine = self.versions.get(daemon.config_hash)
        current = self.versions.get(self.synced.config_hash)
        if mine is None or current is None:
            return []
        return differing_keys(mine, current)
