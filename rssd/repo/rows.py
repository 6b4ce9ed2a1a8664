"""Database rows into DTOs, in one place for every repository and query.

The tables are STRICT, so the values have their types already; only what SQL has no type
for is made here: booleans (stored as 0/1) and the two enums. The columns are the DTOs'
fields in their order, so a row's values are the constructor's arguments: ``rssd status``
reads tens of thousands of jobs, and building each from a dict took three times as long.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rssd.models.dto import ErrorCode, FetchJob, FetchJobStatus, Source

SOURCE_NAMES: tuple[str, ...] = Source.__struct_fields__
JOB_NAMES: tuple[str, ...] = FetchJob.__struct_fields__
#: What a ``Source`` is read from (content_sources), in field order.
SOURCE_COLUMNS = ", ".join(SOURCE_NAMES)
#: What a ``FetchJob`` is read from (fetch_job), in field order.
JOB_COLUMNS = ", ".join(JOB_NAMES)

_ENABLED = SOURCE_NAMES.index("enabled")
_FIXED = SOURCE_NAMES.index("interval_fixed")
_STATUS = JOB_NAMES.index("status")
_ERROR_CODE = JOB_NAMES.index("error_code")
_STATUSES = {status.value: status for status in FetchJobStatus}
_ERROR_CODES = {code.value: code for code in ErrorCode}


def source_from(values: Iterable[Any]) -> Source:
    """A ``Source`` from the values of ``SOURCE_COLUMNS`` (a row selecting them)."""
    args = list(values)
    args[_ENABLED] = bool(args[_ENABLED])
    args[_FIXED] = bool(args[_FIXED])
    return Source(*args)


def job_from(values: Iterable[Any]) -> FetchJob:
    """A ``FetchJob`` from the values of ``JOB_COLUMNS`` (a row selecting them)."""
    args = list(values)
    args[_STATUS] = _STATUSES[args[_STATUS]]
    if args[_ERROR_CODE] is not None:
        args[_ERROR_CODE] = _ERROR_CODES[args[_ERROR_CODE]]
    return FetchJob(*args)
