"""Benchmarks: `python -m bench` is the harness; the other scripts here measure one layer each."""

import os

# Every hub a benchmark starts is a throwaway: none may take over the user's ~/.triggerhubprops.
os.environ.setdefault("TRIGGERHUB_WRITE_PROPS", "false")
