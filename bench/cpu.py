"""CPU seconds spent by each role of a distributed deployment, for a cost per event.

On a machine whose cores are shared (with other processes, or between the deployment's own
processes), a rate measures the share of the cores a run happened to get; the CPU time each
process spent per event does not depend on that share, so `CpuMeter` reports both sides:

    meter = CpuMeter(deployment, database)
    before = meter.sample()
    ...  # the load
    per_event_ms = meter.per_event_ms(before, meter.sample(), events)

Roles: `controller`, `worker`, `invoker` (the Python processes of that role, summed),
`runtimes` (the action processes the invokers started: proxies and their runtimes), `postgres`
(the server processes serving the deployment's database, found by its name in their process
titles). The Kafka broker is shared with whatever else uses it, so it is left out. A process
that ended between two samples loses the CPU time it spent since the first.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import psutil

from tests.plugins.distributed import Deployment

ROLES = ("controller", "worker", "invoker", "runtimes", "postgres")


class CpuMeter:
    def __init__(self, deployment: Deployment, database_url: str) -> None:
        self._deployment = deployment
        self._database = urlsplit(database_url).path.lstrip("/")

    def sample(self) -> dict[int, tuple[str, float]]:
        """pid -> (role, user + system CPU seconds so far) of every live process of the deployment."""
        found: dict[int, tuple[str, float]] = {}
        for hub_process in self._deployment.processes:
            if hub_process.popen.poll() is not None:
                continue
            try:
                process = psutil.Process(hub_process.pid)
                found[process.pid] = (hub_process.role, _cpu_s(process))
                if hub_process.role == "invoker":
                    for child in process.children(recursive=True):
                        found[child.pid] = ("runtimes", _cpu_s(child))
            except psutil.Error:  # ended meanwhile
                continue
        for process in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(process.info["cmdline"] or ())
            if process.info["name"] == "postgres" and f" {self._database} " in f" {title} ":
                try:
                    found[process.pid] = ("postgres", _cpu_s(process))
                except psutil.Error:
                    continue
        return found

    @staticmethod
    def per_event_ms(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                     events: int) -> dict[str, float]:
        """CPU milliseconds per event of each role between two samples, and their `total`."""
        spent: Counter[str] = Counter({role: 0.0 for role in ROLES})
        for pid, (role, seconds) in after.items():
            spent[role] += seconds - before.get(pid, (role, 0.0))[1]
        per_event = {role: round(spent[role] * 1000 / max(events, 1), 3) for role in ROLES}
        per_event["total"] = round(sum(per_event.values()), 3)
        return per_event


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)
