"""Fixtures for external services (dockerd, Mosquitto, PostgreSQL, Kafka)."""
