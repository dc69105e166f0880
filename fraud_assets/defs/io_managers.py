"""Parquet storage for DataFrame assets, one file per daily partition, on any `core.storage` location.

Unlike `dg.UPathIOManager`, this IO manager accepts an output that spans several partitions
(a single-run backfill) and splits it by the column named in the asset's ``partition_expr``
metadata, so a 90-day backfill is one run that still writes one file per day.
"""

from __future__ import annotations

import pickle
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core.contract import asset_location, partition_location
from fraud_assets.core.ingest import day_keys
from fraud_assets.core.storage import Location


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset (partition) as Parquet under ``base_path``, in the layout of
    `fraud_assets.core.contract` (the scoring API reads the same files).

    ``base_path`` is a local folder by default; an ``s3://bucket/prefix`` (or any fsspec URL)
    works unchanged, reached with ``storage_options`` (the endpoint; credentials come from the
    environment, see `fraud_assets.core.storage`).
    """

    base_path: str
    storage_options: dict[str, Any] = {}

    def _root(self) -> Location:
        return Location.of(self.base_path, self.storage_options)

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> Location:
        return partition_location(self._root(), asset_key.path, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame, got {type(obj)}")
        key = context.asset_key
        if not context.has_asset_partitions:
            path = self._path(key, None)
            path.write_parquet(obj)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
            return
        keys = list(context.asset_partition_keys)
        column = (context.definition_metadata or {}).get("partition_expr")
        if not column or column not in obj:
            raise ValueError(
                f"{key.to_user_string()}: a partitioned output needs the column named by the "
                f"asset's 'partition_expr' metadata (got {column!r})"
            )
        values = obj[column]
        days = day_keys(values) if pd.api.types.is_datetime64_any_dtype(values.dtype) else values.to_numpy()
        outside = sorted(set(np.unique(days.astype(str))) - set(keys))
        if outside:
            raise ValueError(
                f"{key.to_user_string()}: rows for partition(s) {outside[:5]} are outside this run's "
                f"partitions {keys[0]}..{keys[-1]}; refusing to drop them"
            )
        for partition_key in keys:
            self._path(key, partition_key).write_parquet(
                obj.loc[days == partition_key].reset_index(drop=True)
            )
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(asset_location(self._root(), key.path))),
                "partitions": len(keys),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if not context.has_asset_partitions:
            return self._path(key, None).read_parquet()
        # An input that reads a lookback window may start before the first materialized day:
        # it opts in with AssetIn(metadata={"allow_missing_partitions": True}) and gets fewer days.
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        frames = []
        for partition_key in context.asset_partition_keys:
            path = self._path(key, partition_key)
            if not path.exists():
                if allow_missing:
                    continue
                raise FileNotFoundError(
                    f"{key.to_user_string()} partition {partition_key} has not been materialized "
                    f"(no file at {path}); materialize it first"
                )
            frames.append(path.read_parquet())
        if not frames:
            raise FileNotFoundError(
                f"{key.to_user_string()}: none of the requested partitions exists; materialize it first"
            )
        frames = [f for f in frames if len(f)] or frames[:1]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class PickleIOManager(dg.ConfigurableIOManager):
    """Python objects (fitted models, reports) as pickles under ``base_path`` (local or fsspec URL).

    Only for objects this platform wrote itself: a model bundle that leaves the platform goes
    through `fraud_assets.core.bundle`, which verifies a SHA-256 before unpickling.
    """

    base_path: str
    storage_options: dict[str, Any] = {}

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Location:
        """``<base>/<asset>.pkl``, or ``<base>/<asset>/<partition>.pkl`` for one partition."""
        base = Location.of(self.base_path, self.storage_options).join(*context.asset_key.path)
        if not context.has_asset_partitions:
            return base.parent.join(f"{base.name}.pkl")
        keys = list(context.asset_partition_keys)
        if len(keys) != 1:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: pickled outputs are stored one partition at a time"
            )
        return base / f"{keys[0]}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        path = self._path(context)
        path.write_with(lambda handle: pickle.dump(obj, handle, protocol=5))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> object:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(f"{context.asset_key.to_user_string()} is not materialized ({path})")
        return pickle.loads(path.read_bytes())
