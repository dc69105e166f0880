"""Parquet storage for DataFrame assets, one file per daily partition, on any `core.storage` location.

Unlike `dg.UPathIOManager`, this IO manager accepts an output that spans several partitions
(a single-run backfill) and splits it by the column named in the asset's ``partition_expr``
metadata, so a 90-day backfill is one run that still writes one file per day.

A frame is converted to Arrow once and cut into days by one sort of the day codes (a million
rows over 120 days: one pass, not 120 comparisons of the whole column); reading concatenates
the days' Arrow tables and converts to pandas once, as ``pd.read_parquet`` does for one file.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fraud_assets.core.contract import asset_location, partition_location
from fraud_assets.core.storage import Location
from fraud_assets.core.timestamps import day_keys

# pyarrow encodes and decodes Parquet outside the GIL (and a local write waits on fsync): days
# are written and decoded a few at a time.
PARALLEL_FILES = 4
# A row's place among several files' rows: its file's index above these bits, its row below.
FILE_BITS = 40


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
        days = split_by_day(obj, column, keys, key.to_user_string())
        with ThreadPoolExecutor(PARALLEL_FILES) as pool:
            list(pool.map(lambda day: self._path(key, day[0]).write_with(_parquet_writer(day[1])), days))
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(asset_location(self._root(), key.path))),
                "partitions": len(keys),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | ParquetDays:
        key = context.asset_key
        if not context.has_asset_partitions:
            return self._path(key, None).read_parquet()
        # An input that reads a lookback window may start before the first materialized day:
        # it opts in with AssetIn(metadata={"allow_missing_partitions": True}) and gets fewer days;
        # with "empty_when_missing" too, no day at all is an empty frame (a feed with nothing yet).
        # "columns" reads only those (that exist): an input that needs a few columns of many days.
        metadata = context.definition_metadata or {}
        allow_missing = bool(metadata.get("allow_missing_partitions"))
        columns = metadata.get("columns")
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
        if not paths:
            if allow_missing and metadata.get("empty_when_missing"):
                return pd.DataFrame()
            raise FileNotFoundError(
                f"{key.to_user_string()}: none of the requested partitions exists; materialize it first"
            )
        days = ParquetDays(tuple(paths))
        # "deferred": the reader gets the files, to read some columns of some rows at a time.
        return days if metadata.get("deferred") else days.read(columns)


@dataclass(frozen=True)
class ParquetDays:
    """The daily files of an input, read when asked: only some columns, and only the rows a
    filter keeps, a few files at a time, so a reader holds its part of the days, never all of
    them (a card shard of a lookback window)."""

    paths: tuple[Location, ...]

    def dtypes(self) -> pd.Series:
        """The pandas dtypes the files' columns read as (without ``arrow_text``): the last file's
        schema, no rows."""
        data = self.paths[-1].read_bytes() if self.paths else b""
        if not data:
            return pd.Series(dtype=object)
        return pq.read_schema(pa.BufferReader(data)).empty_table().to_pandas().dtypes

    def read(
        self,
        columns: Sequence[str] | None = None,
        where: Callable[[pa.Table], np.ndarray] | None = None,
        position: str | None = None,
        arrow_text: bool = False,
    ) -> pd.DataFrame:
        """The rows ``where`` keeps (all without it) of ``columns`` (those that exist; all
        without them), as one frame; no file: an empty frame. ``position`` names an int64 column
        to add with each row's place among all the files' rows (file, then row), so rows read in
        parts can be put back in the order of the whole. ``arrow_text``: text columns stay Arrow
        strings (``string[pyarrow]``: the characters and an offset per value) rather than a
        Python object per value."""
        if not self.paths:
            return pd.DataFrame()
        wanted = list(columns) if columns is not None else None

        def table(item: tuple[int, bytes]) -> pa.Table:
            read = _parquet_table(item[1], wanted)
            if position is not None:
                places = (item[0] << FILE_BITS) + np.arange(read.num_rows, dtype=np.int64)
                read = read.append_column(position, pa.array(places))
            return read if where is None else read.filter(pa.array(where(read)))

        # all files' bytes at once (on an object store one round of requests), or, filtered, a
        # few files at a time: the bytes of the days are never all held beside the kept rows
        step = len(self.paths) if where is None else PARALLEL_FILES
        tables = []
        for start in range(0, len(self.paths), step):
            batch = list(self.paths[start : start + step])
            with ThreadPoolExecutor(PARALLEL_FILES) as pool:
                tables += list(pool.map(table, enumerate(Location.read_many(batch), start)))
        return concat_days(tables, ARROW_TEXT if arrow_text else None)


# Arrow text types as pandas' Arrow-backed text.
ARROW_TEXT = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}.get


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


def concat_days(tables: list[pa.Table], types_mapper=None) -> pd.DataFrame:
    """Daily tables as one frame, converted once (as ``pd.read_parquet`` converts one file);
    ``types_mapper`` as in ``pyarrow.Table.to_pandas``."""
    tables = [t for t in tables if t.num_rows] or tables[:1]
    schema = tables[0].schema
    if all(t.schema.equals(schema, check_metadata=False) for t in tables[1:]):
        return pa.concat_tables(tables).to_pandas(types_mapper=types_mapper)
    # days written by different versions of an asset: pandas aligns their columns
    return pd.concat([t.to_pandas(types_mapper=types_mapper) for t in tables], ignore_index=True)


def _parquet_writer(table: pa.Table):
    return lambda handle: pq.write_table(table, handle)


def _parquet_table(data: bytes, columns: list[str] | None = None) -> pa.Table:
    if columns is None:
        return pq.read_table(pa.BufferReader(data), use_pandas_metadata=True)
    present = set(pq.read_schema(pa.BufferReader(data)).names)
    return pq.read_table(pa.BufferReader(data), columns=[col for col in columns if col in present])


# The resource key of the IO manager that hands the outputs of a graph's inner steps (no asset)
# from one step to the next, wherever each step runs.
STEP_IO_MANAGER = "step_io_manager"


class PickleIOManager(dg.ConfigurableIOManager):
    """Python objects (fitted models, reports) as pickles under ``base_path`` (local or fsspec URL).

    Also the outputs of the steps inside a graph-backed asset (a card shard of a day), which are
    no asset: ``<base>/<run id>/<step>/<output>[/<mapping key>].pkl``, in the object store on the
    cluster profile, so a step on one Celery worker reads what a step on another wrote.

    Only for objects this platform wrote itself: a model bundle that leaves the platform goes
    through `fraud_assets.core.bundle`, which verifies a SHA-256 before unpickling.
    """

    base_path: str
    storage_options: dict[str, Any] = {}

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Location:
        """``<base>/<asset>.pkl``, ``<base>/<asset>/<partition>.pkl`` for one partition, or an
        inner step's output's own path."""
        root = Location.of(self.base_path, self.storage_options)
        if not context.has_asset_key:
            # run id, step key, output name (and the mapping key of a dynamic output); a mapped
            # step's key holds brackets (`shard_features[3]`), which object stores may read as globs
            *folders, last = (re.sub(r"[^\w.=-]", "_", part) for part in context.get_identifier())
            return root.join(*folders, f"{last}.pkl")
        base = root.join(*context.asset_key.path)
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
            # An input that can do without opts in with AssetIn(metadata={"allow_missing": True}).
            if (context.definition_metadata or {}).get("allow_missing"):
                return None
            raise FileNotFoundError(f"{context.asset_key.to_user_string()} is not materialized ({path})")
        return pickle.loads(path.read_bytes())
