"""Activation log framing and formatting (pure parts of the process runtime)."""

from __future__ import annotations

from triggerhub.invoker.base import LOG_SENTINEL
from triggerhub.invoker.process import LogLine, LogStream, format_logs, iso_ns

SENTINEL = LOG_SENTINEL.encode()


def texts(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


def test_sentinel_splits_activations_and_partial_lines_are_joined() -> None:
    stream = LogStream("stdout")
    stream.feed(b"one\ntw")
    assert not stream.ready
    stream.feed(b"o\n" + SENTINEL + b"\nthree\n")
    assert stream.ready
    assert texts(stream.take()) == ["one", "two"]
    assert not stream.ready
    stream.feed(SENTINEL + b"\n")
    assert texts(stream.take()) == ["three"]


def test_text_written_without_newline_before_the_sentinel_is_kept() -> None:
    stream = LogStream("stderr")
    stream.feed(b"no newline" + SENTINEL + b"\n")
    assert texts(stream.take()) == ["no newline"]
    assert stream.sentinels == 0


def test_eof_makes_the_stream_ready_and_flushes_the_last_line() -> None:
    stream = LogStream("stdout")
    stream.feed(b"a\nunterminated")
    stream.close()
    assert stream.ready
    assert texts(stream.take()) == ["a", "unterminated"]


def test_format_is_openwhisk_log_line() -> None:
    lines = [LogLine(1_795_836_629_428_983_391, "stdout", "hello")]
    assert format_logs(lines, 100) == ["2026-11-28T03:30:29.428983391Z stdout: hello"]
    assert iso_ns(0) == "1970-01-01T00:00:00.000000000Z"


def test_lines_are_merged_by_time_and_truncated_at_the_limit() -> None:
    lines = [LogLine(3, "stdout", "ccc"), LogLine(1, "stdout", "aaa"), LogLine(2, "stderr", "bbb")]
    stamp = iso_ns(1)[:-11]  # all three stamps share the second
    assert [line.replace(stamp, "T") for line in format_logs(lines, 6)] == [
        "T.000000001Z stdout: aaa",
        "T.000000002Z stderr: bbb",
        "Logs were truncated because the total bytes size exceeds the limit of 6 bytes.",
    ]
    assert [line.replace(stamp, "T") for line in format_logs(lines, 9)] == [
        "T.000000001Z stdout: aaa", "T.000000002Z stderr: bbb", "T.000000003Z stdout: ccc"]
