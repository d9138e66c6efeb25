"""Describe one row change of the sqlite feed in a line.

The feed passes {table, op, rowid, key, row, old, id, at}: `row` is the row after the change
(null for a DELETE), `old` the row before it (null for an INSERT).
"""


def main(args):
    row = args.get("row") or args.get("old") or {}
    return {"text": f"{str(args.get('op', 'change')).lower()} on {args.get('table')} (key {args.get('key')})",
            "note": row.get("text")}
