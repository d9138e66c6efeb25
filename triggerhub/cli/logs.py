"""The hub's log file: stderr always, and with $TRIGGERHUB_LOG_FILE a file rotated by size.

At INFO the hub logs state changes (start, stop, feeds up or down, errors); one line per event
or activation is DEBUG (`-v`), so a steady load does not grow the log.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

import click

from triggerhub.config import LogConfig

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_file(settings: LogConfig) -> None:
    """Also write the log to `settings.file`: at most `file_max_bytes` per file, `file_backups` old files kept."""
    if not settings.file:
        return
    try:
        handler = RotatingFileHandler(settings.file, maxBytes=settings.file_max_bytes,
                                      backupCount=settings.file_backups, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"TRIGGERHUB_LOG_FILE={settings.file}: cannot open it ({exc.strerror}); "
                                   "choose a writable path or unset it") from exc
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(handler)
