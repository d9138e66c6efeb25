"""Runs `python -m MODULE ARGS` (a hub) counting the bytecodes each function executes on the main
thread (the event loop) between SIGUSR1 and SIGUSR2; on SIGUSR2 writes the counts as JSON to
$TH_OPCODES_OUT. A wrapper for bench/observe_opcodes.py: `python bench/opcode_hub.py PYTHON -m MODULE ARGS`.

Tracing every opcode makes the hub some 20 times slower, but the counts do not depend on the
machine's load: two runs of the same hub differ by a few opcodes per fire (asyncio's scheduling).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from collections import Counter
from types import CodeType, FrameType
from typing import Any

_opcodes: Counter[CodeType] = Counter()
_calls: Counter[CodeType] = Counter()


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        _opcodes[frame.f_code] += 1
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    if event != "call":  # a new frame, or a coroutine resumed
        return None
    _calls[frame.f_code] += 1
    frame.f_trace_opcodes = True
    return _local


def _start(*_: Any) -> None:
    sys.settrace(_global)


def _stop(*_: Any) -> None:
    sys.settrace(None)
    counts: dict[str, list[int]] = {}
    for code in _opcodes.keys() | _calls.keys():
        where = code.co_filename.split("site-packages/")[-1]
        key = f"{where}:{code.co_firstlineno}:{code.co_name}"
        opcodes, calls = counts.get(key, [0, 0])
        counts[key] = [opcodes + _opcodes[code], calls + _calls[code]]
    with open(os.environ["TH_OPCODES_OUT"], "w") as out:
        json.dump(counts, out)


def main() -> None:
    _, _python, flag, module, *args = sys.argv
    if flag != "-m":
        raise SystemExit("usage: python bench/opcode_hub.py PYTHON -m MODULE ARGS")
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
