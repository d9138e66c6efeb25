"""Where the CLI finds a hub, as `wsk` does: flags, environment, then a properties file in $HOME.

`triggerhub up` writes `~/.triggerhubprops` (APIHOST=, AUTH=; `TRIGGERHUB_PROPS` moves it), not
`~/.wskprops`: that file may point the user's real `wsk` at another OpenWhisk, and a hub started
for a moment must not silently redirect it. `~/.wskprops` is still read, after ours. A key from a
file is used only with the APIHOST written beside it, so one hub's key never goes to another.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from triggerhub.config import client_settings
from triggerhub.engine.bootstrap import read_credentials
from triggerhub.manifests.commands import read_wskprops

PROPS_ENV = "TRIGGERHUB_PROPS"
DEFAULT_APIHOST = "http://127.0.0.1:3233"


@dataclass(frozen=True, slots=True)
class HubSettings:
    apihost: str
    auth: str  # empty when nothing gave a key
    apihost_from: str  # what chose the address, for error messages: "--apihost", "~/.triggerhubprops", ...


def props_path() -> Path:
    return client_settings().props


def write_props(apihost: str, auth: str, *, home: Path) -> Path:
    """Record a running hub for CLIs started in any folder; mode 0600 since it holds a key."""
    path = props_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# written by `triggerhub up` or `controller` (home: {home.resolve()}); read by the triggerhub CLI\n"
            f"APIHOST={apihost}\nAUTH={auth}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)
    return path


def normalise(apihost: str) -> str:
    if not apihost.startswith(("http://", "https://")):
        apihost = "http://" + apihost
    return apihost.rstrip("/")


def resolve(apihost: str | None, auth: str | None) -> HubSettings:
    """apihost: --apihost, $TRIGGERHUB_APIHOST, ~/.triggerhubprops, ~/.wskprops, the default.
    auth: --auth, $TRIGGERHUB_AUTH, the AUTH of a properties file naming the chosen APIHOST, the
    guest key in $TRIGGERHUB_HOME (default ./.triggerhub)."""
    files = [(f"{_shown(props_path())}", read_wskprops(props_path())),
             (f"{_shown(_wskprops_path())}", read_wskprops(_wskprops_path()))]
    settings = client_settings()
    chosen, source = apihost, "--apihost"
    if not chosen and settings.apihost:
        chosen, source = settings.apihost, "TRIGGERHUB_APIHOST"
    for name, props in files:
        if not chosen and props.get("APIHOST"):
            chosen, source = props["APIHOST"], name
    if not chosen:
        chosen, source = DEFAULT_APIHOST, "the default"
    chosen = normalise(chosen)
    key = auth or settings.auth
    for _, props in files:
        if not key and props.get("AUTH") and normalise(props.get("APIHOST") or DEFAULT_APIHOST) == chosen:
            key = props["AUTH"]
    if not key:
        key = read_credentials(settings.home).get("guest", "")
    return HubSettings(chosen, key, source)


def _wskprops_path() -> Path:
    return client_settings().wskprops


def _shown(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text


def props_lines(apihost: str, auth: str) -> list[str]:
    """What `triggerhub up` prints for the user to copy."""
    return [f"wsk property set --apihost {apihost} --auth {auth}",
            f"export TRIGGERHUB_APIHOST={apihost} TRIGGERHUB_AUTH={json.dumps(auth)[1:-1]}"]
