"""The hub's log file: TRIGGERHUB_LOG_FILE and its rotation by size, and per-event lines at DEBUG."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from triggerhub.cli.logs import log_to_file
from triggerhub.config import LogConfig, load_config


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, RotatingFileHandler)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_the_log_file_settings_are_read_from_the_environment() -> None:
    config = load_config(env={"TRIGGERHUB_LOG_FILE": "/var/log/hub.log", "TRIGGERHUB_LOG_FILE_MAX_BYTES": "2048",
                              "TRIGGERHUB_LOG_FILE_BACKUPS": "2"})
    assert config.log == LogConfig(file="/var/log/hub.log", file_max_bytes=2048, file_backups=2)
    assert load_config(env={}).log == LogConfig(file="", file_max_bytes=10 * 1024 * 1024, file_backups=5)


def test_the_log_file_is_rotated_at_its_size_and_keeps_its_backups(tmp_path: Path, root_handlers: None) -> None:
    path = tmp_path / "hub.log"
    log_to_file(LogConfig(file=str(path), file_max_bytes=1000, file_backups=2))
    logging.getLogger().setLevel(logging.INFO)
    for n in range(100):
        logging.getLogger("triggerhub.test").info("line %03d of the state changes", n)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["hub.log", "hub.log.1", "hub.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert path.read_text().splitlines()[-1].endswith("INFO triggerhub.test: line 099 of the state changes")


def test_an_unwritable_log_file_is_refused_with_the_setting_named(tmp_path: Path, root_handlers: None) -> None:
    with pytest.raises(click.ClickException) as caught:
        log_to_file(LogConfig(file=str(tmp_path / "missing" / "hub.log")))
    assert caught.value.message == (f"TRIGGERHUB_LOG_FILE={tmp_path / 'missing' / 'hub.log'}: cannot open it (No such "
                                    "file or directory); choose a writable path or unset it")
