"""Describe one row change from the postgres feed's logical mode in a line.

The feed passes {table, op, key, row, old, lsn, xid, at, seq}: `row` is the row after the change
(null for a DELETE), `old` the row before it (whole with REPLICA IDENTITY FULL), `lsn` and `at`
the commit's LSN and time.
"""


def main(args):
    return {"text": f"{str(args.get('op', 'change')).lower()} on {args.get('table')} (key {args.get('key')})",
            "lsn": args.get("lsn"), "before": args.get("old"), "after": args.get("row")}
