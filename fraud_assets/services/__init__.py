"""Tooling to run the platform on one machine and to test it: the services of `make run` (both
profiles), the cluster profile's real servers, the Celery worker's entry point, the SQLite event
log storage, and the small worlds and champions that tests and benchmarks build.

Not part of the product's data path: nothing in `fraud_assets.core`, `fraud_assets.defs` or
`fraud_serving` imports it (the instance's `dagster.yaml` names its event log storage by module).
"""
