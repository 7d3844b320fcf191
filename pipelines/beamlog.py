"""What of Beam's own logging reaches a build's standard error.

Every build printed lines a user can do nothing about, from the driver and from each worker process:

- ``apitools not found, and bigquery client libraries are not available`` on importing Beam without its
  GCP extras (we never use BigQuery). Logged with ``logging.warning``, it also installed a root handler
  on standard error (``logging.basicConfig``), so in a worker the harness's INFO lines
  (``Logging handler created.``) were printed too, once the harness set the root level to INFO;
- in each worker, ``No semi_persistent_directory found`` and ``Discarding unparseable args`` for the
  runner's own flags, which the worker's option parser does not know.

:func:`quiet_beam_chatter` installs the root handler first, at WARNING, leaving those lines out. Every
other warning and error still prints. In the driver ``Discarding unparseable args`` is kept, since there
it names a mistyped flag of the user's.

Each worker's records also reach the driver through the runner's logging service, which logs them again
there as ``Worker: ...`` lines: :func:`quiet_worker_relay` lets only errors through that second way, since
a worker prints its own.
"""

from __future__ import annotations

import logging

_IMPORT_NOTICE = ("root", "apitools not found")
_RELAY_LOGGER = "apache_beam.runners.portability.local_job_service"
_WORKER_NOTICES = (
    ("apache_beam.runners.worker.sdk_worker_main", "No semi_persistent_directory found"),
    ("apache_beam.options.pipeline_options", "Discarding unparseable args"),
)


class BeamChatterFilter(logging.Filter):
    """Drops records whose (logger name, message start) is one of ``notices``."""

    def __init__(self, notices: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(record.name == name and message.startswith(start) for name, start in self.notices)


def quiet_beam_chatter(worker: bool) -> None:
    """For a process about to import Beam: a WARNING handler on standard error that leaves out Beam's
    start-up notices (and, in a ``worker``, the harness's). Nothing changes if the root logger already
    has a handler: whoever installed it decides what is shown."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    handler.addFilter(BeamChatterFilter((_IMPORT_NOTICE, *_WORKER_NOTICES) if worker else (_IMPORT_NOTICE,)))
    root.addHandler(handler)


def quiet_worker_relay() -> None:
    """For a build's driver, in-process callers too: the runner's copies of worker records, errors only."""
    logging.getLogger(_RELAY_LOGGER).setLevel(logging.ERROR)
