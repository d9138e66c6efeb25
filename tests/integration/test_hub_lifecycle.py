"""A hub's life as a process sees it: what starting loads, and what stopping leaves behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Starts the embedded hub on SQLite (the process runtime, no stem cells), runs one action, and
# prints which optional drivers its modules and its start loaded.
EMBEDDED_START = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path

    import aiohttp

    from triggerhub.cli.compose import running_hub
    from triggerhub.config import load_config

    async def main(home):
        config = load_config(env={"TRIGGERHUB_HOME": home, "TRIGGERHUB_PORT": "0", "TRIGGERHUB_RUNTIME": "process",
                                  "TRIGGERHUB_DEPLOY_EXAMPLES": "false", "TRIGGERHUB_PREWARM_COUNT": "0"})
        async with running_hub(config) as hub, aiohttp.ClientSession() as session:
            auth = aiohttp.BasicAuth(*hub.guest_auth.split(":"))
            url = f"{hub.apihost}/api/v1/namespaces/_/actions/echo"
            async with session.put(url, auth=auth, json={"exec": {"kind": "python:3.11",
                                   "code": "def main(args):\\n    return args"}}) as response:
                assert response.status == 200, await response.text()
            async with session.post(url, auth=auth, params={"blocking": "true", "result": "true"},
                                    json={"n": 1}) as response:
                result = await response.json()
        loaded = sorted(name for name in sys.modules if name.partition(".")[0] in ("asyncpg", "aiokafka", "faust"))
        print(json.dumps({"result": result, "loaded": loaded}))

    asyncio.run(main(sys.argv[1]))
""")


def test_an_embedded_hub_on_sqlite_never_loads_asyncpg(tmp_path: Path) -> None:
    """asyncpg (~2.9 MiB of idle RSS) is for PostgreSQL stores and feeds only: none of its error
    classes may be named at module level on the embedded start path."""
    run = subprocess.run([sys.executable, "-c", EMBEDDED_START, str(tmp_path / "home")], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"result": {"n": 1}, "loaded": []}

