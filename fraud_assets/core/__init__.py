"""Pure domain code of fraudops: what the platform computes.

Nothing under ``fraud_assets.core`` imports Dagster; the Dagster layer in
``fraud_assets.defs`` only decides when and how this code runs.
"""
