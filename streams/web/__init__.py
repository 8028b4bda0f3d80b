"""The worker's HTTP API (docs/http-api.md), served by Faust's web server.

``install.install(ctx, state)`` registers every endpoint; the other modules are plain pieces (keys,
rate limits, audit records, metrics, readiness checks, the OpenAPI document) that are tested
without a broker.
"""
