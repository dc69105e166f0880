"""Parquet storage for DataFrame assets, one file per daily partition, anywhere UPath reaches.

Unlike `dg.UPathIOManager`, this IO manager accepts an output that spans several partitions
(a single-run backfill) and splits it by the column named in the asset's ``partition_expr``
metadata, so a 90-day backfill is one run that still writes one file per day.

A frame is converted to Arrow once and cut into days by one sort of the day codes (a million
rows over 120 days: one pass, not 120 comparisons of the whole column); reading concatenates
the days' Arrow tables and converts to pandas once, as ``pd.read_parquet`` does for one file.
"""

from __future__ import annotations

import pickle
import uuid
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from fraud_assets.core.timestamps import day_keys

# pyarrow encodes and decodes Parquet outside the GIL: days are written and read a few at a time.
PARALLEL_FILES = 4


def write_atomically(path: UPath, write) -> None:
    """Write a file through ``write(handle)``; locally to a temporary name first, then renamed,
    so a crash never leaves a half-written file behind (object stores write whole objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.protocol not in ("", "file", "local"):
        with path.open("wb") as handle:
            write(handle)
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as handle:
        write(handle)
    tmp.rename(path)


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset (partition) as Parquet under ``base_path``.

    ``base_path`` is a local folder by default; an ``s3://bucket/prefix`` (or any fsspec URL)
    works unchanged, with credentials from ``storage_options`` or the environment.
    """

    base_path: str
    storage_options: dict[str, str] = {}

    def _root(self) -> UPath:
        return UPath(self.base_path, **self.storage_options)

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        folder = self._root().joinpath(*asset_key.path)
        return folder / f"{partition_key}.parquet" if partition_key else folder.with_suffix(".parquet")

    def _write(self, frame: pd.DataFrame | pa.Table, path: UPath) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        write_atomically(path, lambda handle: pq.write_table(table, handle))

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame, got {type(obj)}")
        key = context.asset_key
        if not context.has_asset_partitions:
            path = self._path(key, None)
            self._write(obj, path)
            context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
            return
        keys = list(context.asset_partition_keys)
        column = (context.definition_metadata or {}).get("partition_expr")
        if not column or column not in obj:
            raise ValueError(
                f"{key.to_user_string()}: a partitioned output needs the column named by the "
                f"asset's 'partition_expr' metadata (got {column!r})"
            )
        days = split_by_day(obj, column, keys, key.to_user_string())
        with ThreadPoolExecutor(PARALLEL_FILES) as pool:
            list(pool.map(lambda item: self._write(item[1], self._path(key, item[0])), days))
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(self._root().joinpath(*key.path))),
                "partitions": len(keys),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if not context.has_asset_partitions:
            return pd.read_parquet(self._path(key, None).open("rb"))
        # An input that reads a lookback window may start before the first materialized day:
        # it opts in with AssetIn(metadata={"allow_missing_partitions": True}) and gets fewer days.
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        paths = []
        for partition_key in context.asset_partition_keys:
            path = self._path(key, partition_key)
            if path.exists():
                paths.append(path)
            elif not allow_missing:
                raise FileNotFoundError(
                    f"{key.to_user_string()} partition {partition_key} has not been materialized "
                    f"(no file at {path}); materialize it first"
                )
        with ThreadPoolExecutor(PARALLEL_FILES) as pool:
            frames = list(pool.map(_read_table, paths))
        if not frames:
            raise FileNotFoundError(
                f"{key.to_user_string()}: none of the requested partitions exists; materialize it first"
            )
        return concat_days(frames)


def split_by_day(frame: pd.DataFrame, column: str, keys: list[str], asset: str) -> list[tuple[str, pa.Table]]:
    """Each partition key with its rows (an empty table for a day without rows), in one pass.

    Refuses rows whose day is not one of ``keys`` rather than dropping them.
    """
    values = frame[column]
    days = day_keys(values) if pd.api.types.is_datetime64_any_dtype(values.dtype) else values.to_numpy()
    codes, uniques = pd.factorize(days, use_na_sentinel=False)
    outside = sorted({str(day) for day in uniques} - set(keys))
    if outside:
        raise ValueError(
            f"{asset}: rows for partition(s) {outside[:5]} are outside this run's "
            f"partitions {keys[0]}..{keys[-1]}; refusing to drop them"
        )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if len(codes) and not (np.diff(codes) >= 0).all():
        order = np.argsort(codes, kind="stable")
        table, codes = table.take(order), codes[order]
    bounds = np.searchsorted(codes, np.arange(len(uniques) + 1))
    where = {str(day): i for i, day in enumerate(uniques)}
    return [
        (day, table.slice(bounds[where[day]], bounds[where[day] + 1] - bounds[where[day]]))
        if day in where
        else (day, table.slice(0, 0))
        for day in keys
    ]


def _read_table(path: UPath) -> pa.Table:
    with path.open("rb") as handle:
        return pq.read_table(handle, use_pandas_metadata=True)


def concat_days(tables: list[pa.Table]) -> pd.DataFrame:
    """Daily tables as one frame, converted once (as ``pd.read_parquet`` converts one file)."""
    tables = [t for t in tables if t.num_rows] or tables[:1]
    schema = tables[0].schema
    if all(t.schema.equals(schema, check_metadata=False) for t in tables[1:]):
        return pa.concat_tables(tables).to_pandas()
    # days written by different versions of an asset: pandas aligns their columns
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


class PickleIOManager(dg.ConfigurableIOManager):
    """Python objects (fitted models, reports) as pickles under ``base_path`` (local or fsspec URL).

    Only for objects this platform wrote itself: a model bundle that leaves the platform goes
    through `fraud_assets.core.bundle`, which verifies a SHA-256 before unpickling.
    """

    base_path: str
    storage_options: dict[str, str] = {}

    def _path(self, context: dg.OutputContext | dg.InputContext) -> UPath:
        """``<base>/<asset>.pkl``, or ``<base>/<asset>/<partition>.pkl`` for one partition."""
        base = UPath(self.base_path, **self.storage_options).joinpath(*context.asset_key.path)
        if not context.has_asset_partitions:
            return base.with_suffix(".pkl")
        keys = list(context.asset_partition_keys)
        if len(keys) != 1:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: pickled outputs are stored one partition at a time"
            )
        return base / f"{keys[0]}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        path = self._path(context)
        write_atomically(path, lambda handle: pickle.dump(obj, handle, protocol=5))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> object:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(f"{context.asset_key.to_user_string()} is not materialized ({path})")
        with path.open("rb") as handle:
            return pickle.load(handle)
