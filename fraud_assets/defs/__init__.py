"""The Dagster layer: when and how the domain code in ``fraud_assets.core`` runs.

One module per stage; `fraud_assets.definitions` loads this folder with
``dg.load_from_defs_folder``.
"""
