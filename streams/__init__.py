"""phaseflow's roof: app wiring, HTTP API, monitoring, CLI, local services, demo, worker; and,
in ``phaseflow.streams.core``, the ground floor every feature is built on (docs/architecture.md)."""
