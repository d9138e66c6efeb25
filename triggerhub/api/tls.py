"""HTTPS for the hub's one listener (REST API, /hooks, web actions), with certificate reloading.

`ReloadingCertificate.server_context()` is the SSLContext given to the aiohttp site. Every TLS
handshake first compares the certificate and key files' stat signatures (inode, size, mtime) with
the ones last loaded, and when either changed it loads the pair into a fresh context and serves
that: new connections see a replaced certificate at once (no polling delay, no restart), open
connections keep theirs. A pair that does not load (e.g. the key rewritten before the certificate)
is logged once and the previous certificate stays in use until the files change again.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from triggerhub.config import ApiConfig
from triggerhub.errors import ConfigError

log = logging.getLogger(__name__)

_Signature = tuple[tuple[int, int, int, int], ...]


def tls_paths(api: ApiConfig) -> tuple[Path, Path] | None:
    """(certificate, key) when HTTPS is configured; None for plain HTTP. Only one of the two
    settings is a configuration error."""
    if not api.tls_cert and not api.tls_key:
        return None
    if not api.tls_cert or not api.tls_key:
        given, missing = ("TRIGGERHUB_TLS_CERT", "TRIGGERHUB_TLS_KEY") if api.tls_cert else ("TRIGGERHUB_TLS_KEY", "TRIGGERHUB_TLS_CERT")
        raise ConfigError(f"{given} is set but {missing} is not: HTTPS needs both the certificate chain "
                          "and its private key (flags --tls-cert and --tls-key)")
    return Path(api.tls_cert), Path(api.tls_key)


class ReloadingCertificate:
    """A PEM certificate chain and private key, reloaded for new connections when the files change."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self._paths = (cert_path, key_path)
        try:
            self._signature = self._stat()
            self._current = self._load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate {cert_path} with the key {key_path}: {exc}; "
                              "give a PEM certificate chain and the PEM private key that matches it") from exc
        self._rejected: _Signature | None = None
        # The listener's own context only hands each handshake to the current one.
        self._listener = self._load()
        self._listener.sni_callback = self._choose

    def server_context(self) -> ssl.SSLContext:
        return self._listener

    def _stat(self) -> _Signature:
        stats = [os.stat(path) for path in self._paths]
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for s in stats)

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*self._paths)
        return context

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                listener: ssl.SSLContext) -> None:
        self.reload_if_changed()
        connection.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the pair again when its files changed since the last load; True when it did."""
        try:
            signature = self._stat()
        except OSError as exc:  # mid-replacement: keep serving what is loaded
            log.debug("TLS files not readable right now (%s); serving the loaded certificate", exc)
            return False
        if signature in (self._signature, self._rejected):
            return False
        try:
            context = self._load()
        except (OSError, ssl.SSLError) as exc:
            self._rejected = signature
            log.warning("TLS certificate %s / key %s changed but do not load (%s); still serving the previous "
                        "certificate", *self._paths, exc)
            return False
        self._current, self._signature, self._rejected = context, signature, None
        log.info("TLS certificate %s reloaded; new connections use it", self._paths[0])
        return True


def listener_tls(api: ApiConfig) -> ssl.SSLContext | None:
    """The listener's SSLContext when TRIGGERHUB_TLS_CERT/KEY are set (checked now: a bad pair is a
    ConfigError at start-up), else None."""
    paths = tls_paths(api)
    return None if paths is None else ReloadingCertificate(*paths).server_context()


def scheme(tls: ssl.SSLContext | None) -> str:
    return "http" if tls is None else "https"
