"""What state a source is in: one rule, for ``rssd status``, the ``rssd_sources`` gauge
and anything else that names it, so that they cannot disagree."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    OK = "ok"
    FAILING = "failing"
    GONE = "gone"
    DISABLED = "disabled"
    NEVER_FETCHED = "never_fetched"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def needs_attention(self) -> bool:
        """What ``--failing`` reports: a feed that fails, or one that is gone for good."""
        return self in (State.FAILING, State.GONE)


def classify(*, enabled: bool, gone: bool, failures: int, succeeded: bool) -> State:
    """A source's state from its jobs: ``gone`` (its latest job got 410 since its config
    entry last changed), ``failures`` (real failures since its last success: an
    ``interrupted`` job is the daemon's doing and counts for nothing), ``succeeded`` (it
    has a COMPLETED job). A source whose jobs were only ever interrupted has never been
    fetched."""
    if not enabled:
        return State.DISABLED
    if gone:
        return State.GONE
    if failures > 0:
        return State.FAILING
    return State.OK if succeeded else State.NEVER_FETCHED
