"""The feed registry: every feed this hub offers, one line per adapter module.

Each adapter declares its own `FeedKind` (feeds/kind.py); this list is the only place that picks
them, and the FeedManager receives the mapping built here. To add a feed, write its module under
triggerhub/feeds/ ending in a `FEED_KIND`, and add that to the list below.
"""

from __future__ import annotations

from triggerhub.feeds import alarms, files, kafka, mqtt, pg_logical, postgres, sqlite, webhook
from triggerhub.feeds.kind import FeedKind, feed_registry, with_modes

FEED_KINDS: dict[str, FeedKind] = feed_registry(
    *alarms.FEED_KINDS,
    mqtt.FEED_KIND,
    webhook.FEED_KIND,
    files.FEED_KIND,
    with_modes("mode", "outbox", {"outbox": postgres.FEED_KIND, pg_logical.MODE: pg_logical.FEED_KIND}),
    sqlite.FEED_KIND,
    kafka.FEED_KIND,
)
