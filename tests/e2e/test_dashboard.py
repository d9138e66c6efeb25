"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser
is downloaded): sign-in, a fired event's activation shown within a second of its record's end,
the lineage view, charts that count a burst exactly. Screenshots are kept in
test-artefacts/dashboard/ (TH_TEST_ARTEFACTS overrides the folder)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.plugins.hub import HubClient, hub_config, put_action
from tests.plugins.waiting import wait_quiet
from triggerhub.cli.compose import running_hub
from triggerhub.errors import FORBIDDEN
from triggerhub.invoker.process import ProcessRuntimeFactory

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("TH_TEST_ARTEFACTS", Path(__file__).parents[2] / "test-artefacts")) / "dashboard"
ECHO = "def main(args):\n    return args\n"
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
BURST = 12


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where Chromium refuses its own sandbox.
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def screenshot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


async def signed_in(browser: Browser, hub: HubClient) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{hub.apihost}/dashboard")
    await page.fill("#apikey", hub.auth)
    await page.click("#login-form button")
    await page.wait_for_function("document.getElementById('connection').textContent === 'live'", timeout=5000)
    return page


async def rule_setup(hub: HubClient) -> None:
    await put_action(hub, "echo", ECHO, "python:default")
    for collection, name, body in (("triggers", "readings", {}),
                                   ("rules", "store-readings", {"trigger": "readings", "action": "echo"})):
        status, response = await hub.call("PUT", f"namespaces/_/{collection}/{name}", body)
        assert status == 200, response


async def fire(hub: HubClient, payload: dict[str, object]) -> str:
    status, body = await hub.call("POST", "namespaces/_/triggers/readings", payload)
    assert status == 202, body
    return str(body["activationId"])


async def test_without_a_key_the_page_shows_the_sign_in_and_the_stream_refuses(embedded_hub: HubClient,
                                                                                 browser: Browser) -> None:
    hub = embedded_hub
    page = await browser.new_page()
    await page.goto(f"{hub.apihost}/dashboard")
    assert await page.is_visible("#login-form")
    assert await page.is_hidden("#board")
    stream = f"{hub.apihost}/api/v1/namespaces/_/dashboard/stream"
    async with hub.session.get(stream) as response:
        assert (response.status, (await response.json())["error"]) == (401, AUTH_MISSING)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'
    async with hub.session.get(stream, headers={"X-Requested-With": "XMLHttpRequest"}) as response:
        assert (response.status, (await response.json())["error"]) == (401, AUTH_MISSING)
        assert "WWW-Authenticate" not in response.headers  # no browser prompt over the page's sign-in
    async with hub.session.get(f"{hub.apihost}/api/v1/namespaces/other/dashboard/stream",
                               headers=hub.headers()) as response:
        assert (response.status, (await response.json())["error"]) == (403, FORBIDDEN)

    await page.fill("#apikey", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:not-the-key")
    await page.click("#login-form button")
    await page.wait_for_selector("#login-error:has-text('The API key was not accepted')")
    assert await page.is_hidden("#board")
    assert await page.evaluate("sessionStorage.getItem('triggerhub.apikey')") is None
    await screenshot(page, "sign-in-refused")


async def test_a_fired_activation_shows_within_a_second_and_its_lineage_opens(embedded_hub: HubClient,
                                                                              browser: Browser) -> None:
    await shows_within_a_second_with_lineage(embedded_hub, browser, "embedded")


@pytest.mark.kafka
@pytest.mark.postgres
async def test_the_controller_serves_the_dashboard_with_every_invokers_records(distributed_hub: HubClient,
                                                                               browser: Browser) -> None:
    await shows_within_a_second_with_lineage(distributed_hub, browser, "distributed")


async def shows_within_a_second_with_lineage(hub: HubClient, browser: Browser, mode: str) -> None:
    await rule_setup(hub)
    page = await signed_in(browser, hub)
    trigger_activation = await fire(hub, {"temp": 21})

    row = await page.wait_for_selector("#activations tbody tr:has(td:text-is('echo'))", timeout=10_000)
    activation_id = await row.get_attribute("data-activation-id")
    shown_ms = int(await row.get_attribute("data-shown-ms") or 0)
    status, record = await hub.call("GET", f"namespaces/_/activations/{activation_id}")
    assert status == 200, record
    assert record["response"]["result"] == {"temp": 21}
    cells = [await cell.inner_text() for cell in await row.query_selector_all("td")]
    assert cells[1:] == ["echo", "success", str(record["duration"]), "guest/store-readings", "readings", activation_id]
    delay_ms = shown_ms - record["end"]
    assert 0 <= delay_ms < 1000, f"shown {delay_ms} ms after the record's end"
    await screenshot(page, f"activation-shown-{mode}")

    await row.click()
    await page.wait_for_selector(f"#detail-id:text-is('{activation_id}')")
    await page.wait_for_function("!document.getElementById('detail-record').textContent.startsWith('loading')")
    shown_record = json.loads(await page.inner_text("#detail-record"))
    assert (shown_record["activationId"], shown_record["name"]) == (activation_id, "echo")
    await page.wait_for_function(f"document.getElementById('lineage').textContent.includes('{trigger_activation}')",
                                 timeout=5000)
    lineage = await page.inner_text("#lineage")
    assert activation_id in lineage
    await screenshot(page, f"lineage-{mode}")


async def test_charts_count_a_burst_of_fires_exactly(embedded_hub: HubClient, browser: Browser) -> None:
    hub = embedded_hub
    await rule_setup(hub)
    page = await signed_in(browser, hub)
    before = await page.get_attribute("#chart-triggers", "data-totals")
    for i in range(BURST):
        await fire(hub, {"n": i})

    async def chart(name: str, key: str) -> dict[str, int]:
        return json.loads(await page.get_attribute(f"#chart-{name}", key) or "{}")  # type: ignore[no-any-return]

    async def totals() -> tuple[int, int, int]:
        return ((await chart("triggers", "data-totals")).get("readings", 0),
                (await chart("actions", "data-totals")).get("echo", 0),
                (await chart("rules", "data-totals")).get("guest/store-readings", 0))

    settled = await wait_quiet(totals, lambda counts: min(counts) >= BURST, quiet_s=1.5, timeout_s=20)
    assert settled == (BURST, BURST, BURST)
    assert before != await page.get_attribute("#chart-triggers", "data-totals")
    # the per-rule charts are drawn series: the rule's rate, and its p95 duration in every sample
    assert set(await chart("rules", "data-totals")) == {"guest/store-readings"}
    latency_samples = int(await page.get_attribute("#chart-rule-latency", "data-samples") or "0")
    assert latency_samples == int(await page.get_attribute("#chart-rules", "data-samples") or "-1") > 0
    assert "guest/store-readings" in await chart("rule-latency", "data-totals")
    # its one series is drawn in the first series colour (#1565c0; the axes are grey)
    drawn = await page.evaluate("""() => {
        const canvas = document.getElementById("chart-rules");
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let coloured = 0;
        for (let i = 0; i < pixels.length; i += 4) {
            const [r, g, b, a] = pixels.slice(i, i + 4);
            if (a > 200 && r < 60 && g > 70 && g < 130 && b > 160) coloured += 1;
        }
        return coloured;
    }""")
    assert drawn > 20, f"the per-rule chart shows no series ({drawn} pixels in its colour)"
    await screenshot(page, "charts")


async def test_feeds_and_pool_panels_show_a_webhook_feed_with_its_counters(embedded_hub: HubClient,
                                                                             browser: Browser) -> None:
    hub = embedded_hub
    feed = "/whisk.system/webhook/webhook"
    status, response = await hub.call("PUT", "namespaces/_/triggers/push", {"annotations": [{"key": "feed", "value": feed}]})
    assert status == 200, response
    status, created = await hub.call("POST", "namespaces/whisk.system/actions/webhook/webhook",
                                     {"lifecycleEvent": "CREATE", "triggerName": "/_/push", "authKey": hub.auth,
                                      "verify": "none"}, blocking=True)
    assert status == 200, created
    async with hub.session.post(f"{hub.apihost}/hooks/guest/push", json={"n": 1}) as delivered:
        assert delivered.status == 202, await delivered.text()
    page = await signed_in(browser, hub)

    row = "#feeds tbody tr:has(td:text-is('/guest/push'))"
    await page.wait_for_selector(row, timeout=12_000)
    cells = [await cell.inner_text() for cell in await page.query_selector_all(f"{row} td")]
    assert cells == ["/guest/push", feed, "active", "1", "1", "0"]
    pool = {await r.eval_on_selector("td:nth-child(1)", "e => e.textContent"):
            await r.eval_on_selector("td:nth-child(2)", "e => e.textContent")
            for r in await page.query_selector_all("#pool tbody tr")}
    assert pool["runtime"] == "process"
    assert {"warm", "busy", "memory_budget_mb"} <= pool.keys()
    await screenshot(page, "feeds-and-pool")


async def test_the_table_filters_by_name_and_status(embedded_hub: HubClient, browser: Browser) -> None:
    hub = embedded_hub
    await rule_setup(hub)
    await put_action(hub, "refuse", "def main(args):\n    return {'error': 'refused'}\n", "python:default")
    status, response = await hub.call("PUT", "namespaces/_/rules/refuse-readings", {"trigger": "readings", "action": "refuse"})
    assert status == 200, response
    page = await signed_in(browser, hub)
    await fire(hub, {"temp": 1})
    for name in ("echo", "refuse", "readings"):
        await page.wait_for_selector(f"#activations tbody tr:has(td:text-is('{name}'))", timeout=10_000)

    async def visible() -> list[tuple[str, str]]:
        rows = await page.query_selector_all("#activations tbody tr:not([hidden])")
        return sorted([(await r.eval_on_selector("td:nth-child(2)", "e => e.textContent"),
                        await r.eval_on_selector("td:nth-child(3)", "e => e.textContent")) for r in rows])

    assert await visible() == [("echo", "success"), ("readings", "success"), ("refuse", "application error")]
    await page.select_option("#filter-status", "application error")
    assert await visible() == [("refuse", "application error")]
    await page.select_option("#filter-status", "success")
    await page.fill("#filter-name", "ech")
    assert await visible() == [("echo", "success")]
    await page.fill("#filter-name", "refuse")
    assert await visible() == []
    await screenshot(page, "filtered")


async def test_the_hub_stops_at_once_with_a_stream_open(tmp_path: Path) -> None:
    """An open stream ends when the server shuts down, instead of holding it up to its shutdown timeout."""
    async with aiohttp.ClientSession() as session:
        async with running_hub(hub_config(tmp_path / "home"), runtime=ProcessRuntimeFactory(),
                               runtime_name="process") as running:
            client = HubClient(running, session)
            response = await session.get(f"{client.apihost}/api/v1/namespaces/_/dashboard/stream",
                                         headers=client.headers())
            assert response.status == 200
            assert await response.content.readline() == b"event: hello\n"
            stopping = asyncio.get_running_loop().time()
        stopped_s = asyncio.get_running_loop().time() - stopping
        rest = await response.content.read()  # the stream ended: no hang, no error
        response.close()
    assert rest.startswith(b"data: {\"namespace\":\"guest\"")
    assert stopped_s < 10, f"the hub took {stopped_s:.1f} s to stop with a stream open (aiohttp waits up to 60 s)"
