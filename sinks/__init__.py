"""Sinks that write stream output to external stores (BigQuery)."""
