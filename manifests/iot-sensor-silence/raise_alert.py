"""Raise an alert for a sensor that went silent.

The derived event of an absence trigger passes {"kind": "absence", "key": <the sensor's topic>,
"forS": <seconds of silence>, "silentSinceMs", "deadlineMs", "events": [<the last heartbeat>]}.
"""


def main(args):
    topic = str(args.get("key", ""))
    parts = topic.split("/")
    sensor = parts[1] if len(parts) > 2 else topic
    return {"alert": "sensor silent", "sensor": sensor, "silentForS": args.get("forS"),
            "silentSinceMs": args.get("silentSinceMs")}
