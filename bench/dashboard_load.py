"""The dashboard under load: activation records stored at a fixed rate while the page is open in
Debian's headless Chromium; reports the page's frame rate and longest main-thread task, the records
its charts counted against those written, and the hub process's CPU per second, against a floor
measured in the same run with no page open.

    python bench/dashboard_load.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from triggerhub.cli.compose import running_hub
from triggerhub.config import load_config
from triggerhub.invoker.process import ProcessRuntimeFactory
from triggerhub.model import Activation, ActivationResponse, Parameter, new_activation_id
from triggerhub.store.base import Store

PROBE = """
window.__bench = {frames: 0, longestTaskMs: 0};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__bench.longestTaskMs = Math.max(window.__bench.longestTaskMs, e.duration);
}).observe({entryTypes: ["longtask"]});
(function tick() { window.__bench.frames += 1; requestAnimationFrame(tick); })();
"""


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def write_records(store: Store, *, rate: int, seconds: float) -> int:
    """Stores `rate` records a second, in 20 batches a second; returns how many were written."""
    written = 0
    started = time.monotonic()
    batch = rate // 20
    while (elapsed := time.monotonic() - started) < seconds:
        now_ms = int(time.time() * 1000)
        await asyncio.gather(*(store.complete(Activation(
            namespace="guest", name="echo", subject="guest", activation_id=new_activation_id(), start_ms=now_ms - 5,
            end_ms=now_ms, response=ActivationResponse.ok({}), annotations=(Parameter("kind", "python:3.11"),)))
            for _ in range(batch)))
        written += batch
        await asyncio.sleep(max(0.0, (written / rate) - (time.monotonic() - started)))
    del elapsed
    return written


async def main(rate: int, seconds: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="th-dash-bench-"))
    config = load_config(env={"TRIGGERHUB_HOME": str(home), "TRIGGERHUB_PORT": "0", "TRIGGERHUB_DEPLOY_EXAMPLES": "false"})
    async with running_hub(config, runtime=ProcessRuntimeFactory(), runtime_name="process") as hub:
        store = hub.engine.store
        before = cpu_s()
        floor_written = await write_records(store, rate=rate, seconds=seconds)
        floor_cpu = (cpu_s() - before) / seconds
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.add_init_script(PROBE)
            await page.goto(f"{hub.apihost}/dashboard")
            await page.fill("#apikey", hub.guest_auth)
            await page.click("#login-form button")
            await page.wait_for_function("document.getElementById('connection').textContent === 'live'")
            await asyncio.sleep(1.5)  # the first page (history) is shown, not counted
            start_frames = await page.evaluate("window.__bench.longestTaskMs = 0, window.__bench.frames")
            before = cpu_s()
            written = await write_records(store, rate=rate, seconds=seconds)
            loaded_cpu = (cpu_s() - before) / seconds
            await asyncio.sleep(1.5)  # the last summary
            frames = await page.evaluate("window.__bench.frames") - start_frames
            longest_ms = await page.evaluate("window.__bench.longestTaskMs")
            counted = json.loads(await page.get_attribute("#chart-actions", "data-totals") or "{}").get("echo", 0)
            rows = await page.evaluate("document.querySelectorAll('#activations tbody tr').length")
            await browser.close()
    print(f"records written: {written} in {seconds:g} s ({written / seconds:.0f}/s); floor run without a page: {floor_written}")
    print(f"charts counted: {counted} ({counted / written:.1%} of written); table rows kept: {rows}")
    print(f"page: {frames / (seconds + 1.5):.0f} frames/s, longest main-thread task {longest_ms:.0f} ms")
    print(f"hub process CPU: {loaded_cpu:.2f} s/s with the page open vs {floor_cpu:.2f} s/s without "
          f"(ratio {loaded_cpu / floor_cpu:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="records stored per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds))
