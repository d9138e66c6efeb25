"""Nightly job: say which records are older than keepDays (a real job would delete them)."""

import datetime


def main(args):
    keep_days = int(args.get("keepDays", 30))
    cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=keep_days)
    return {"job": args.get("job", "cleanup"), "cutoff": cutoff.date().isoformat(), "keepDays": keep_days}
