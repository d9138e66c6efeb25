"""Seeing the hub: Prometheus metrics (`metrics`), W3C trace context and lineage (`trace`,
`lineage`), and the `/metrics` answer with its loopback listener (`exposition`).

A leaf beside config: every layer may call its hooks; it imports only model, errors and clock.
"""
