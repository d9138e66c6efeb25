"""Flag an MQTT temperature reading above the threshold.

The MQTT feed passes {"topic": "sensors/<id>/temperature", "payload": <reading>, ...}; the payload
is either a number or an object with a "celsius" field.
"""


def main(args):
    payload = args.get("payload")
    celsius = payload.get("celsius") if isinstance(payload, dict) else payload
    try:
        celsius = float(celsius)
    except (TypeError, ValueError):
        return {"error": f"reading {payload!r} on {args.get('topic')} is not a temperature"}
    sensor = str(args.get("topic", "")).split("/")[1:2] or ["unknown"]
    threshold = float(args.get("threshold", 30))
    return {"sensor": sensor[0], "celsius": celsius, "threshold": threshold, "alert": celsius > threshold}
