"""The `--tls-cert/--tls-key` flags of `triggerhub up` and `triggerhub controller`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def tls_options(command: Callable[..., Any]) -> Callable[..., Any]:
    file = click.Path(exists=True, dir_okay=False, path_type=Path)
    command = click.option("--tls-key", type=file, default=None,
                           help="PEM private key of --tls-cert ($TRIGGERHUB_TLS_KEY)")(command)
    return click.option("--tls-cert", type=file, default=None,
                        help="serve HTTPS with this PEM certificate chain, reloaded when the file changes "
                             "($TRIGGERHUB_TLS_CERT)")(command)


def tls_overrides(cert: Path | None, key: Path | None) -> dict[str, str | None]:
    return {"TLS_CERT": str(cert) if cert else None, "TLS_KEY": str(key) if key else None}
