"""Sum the amounts of one batch of order records from the kafka feed.

The feed passes {"messages": [{topic, partition, offset, key, value, headers, timestamp}, ...]},
OpenWhisk's Kafka feed shape; with valueEncoding json each value is the decoded record.
"""


def main(args):
    messages = args.get("messages", [])
    amounts = [m["value"].get("amount", 0) for m in messages if isinstance(m.get("value"), dict)]
    return {"records": len(messages), "total": round(sum(float(a) for a in amounts), 2),
            "offsets": {f"{m['topic']}/{m['partition']}": m["offset"] for m in messages}}
