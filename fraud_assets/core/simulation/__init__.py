"""Building blocks of the transaction simulator (pure numpy, no Dagster).

The public API lives in ``fraud_assets.core.generator``; these modules are split
only to keep each concern (places, population, events, legit days, fraud
episodes) small enough to read.
"""
