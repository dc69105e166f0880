r"""Pandera contracts for transactions: raw (as received) and validated (clean, typed).

`RawTransactionSchema` is the row-level contract: the validation step runs it lazily and
quarantines each failing row with the name of the check it failed. `ValidatedTransactionSchema`
is what every downstream stage may rely on: all canonical event and derived columns present,
typed, unique IDs, ordered timestamps.

Both run on every million rows a user ingests (the validation step, then dagster-pandera's type
check of its output), so their cost is kept proportional:

* the text formats are ``str_matches`` checks evaluated by Arrow's RE2 engine on the whole
  column (~0.05 s per million values; pandas' ``str.match`` calls Python's ``re`` once per value,
  ~0.25 s). RE2 is the stricter reading of these patterns: ``$`` is the end of the text (Python
  also accepts a trailing newline) and ``\d`` an ASCII digit;
* the row-wise dataframe checks pass ``ignore_na=False``: each already passes rows whose inputs
  are missing, and Pandera's own null handling scanned all 28 columns for every one of them.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pyarrow.compute as pc
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from fraud_assets.core import columns as c
from fraud_assets.core.text import arrow_text

# Formats. Our generator emits TXN.../CARD.../MER... IDs; a user's own IDs may look different,
# so the ID check is "one printable token without spaces", not our prefix.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
IPV4 = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV6 = r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
IP_PATTERN = rf"^(?:{IPV4}|{IPV6})$"
COUNTRY_PATTERN = r"^[A-Z]{3}$"
DEVICE_PATTERN = r"^[A-Za-z0-9_\-]{4,128}$"

# The columns each row-level dataframe check reads: a rejected row reports their values.
ROW_CHECK_COLUMNS: dict[str, tuple[str, ...]] = {
    "weekend_consistent_with_day_of_week": ("day_of_week", "is_weekend"),
    "hour_of_day_matches_timestamp": ("hour_of_day", "timestamp"),
    "day_of_week_matches_timestamp": ("day_of_week", "timestamp"),
    "label_known_after_transaction": ("label_known_at", "timestamp"),
    "online_has_device_fingerprint": ("is_online", "device_fingerprint"),
}

# Dataset-level bounds of the seed's "Data Quality Thresholds".
FRAUD_RATE_MIN = 0.001
FRAUD_RATE_MAX = 0.05


@pandas_engine.Engine.register_dtype
@dtypes.immutable
class Text(pandas_engine.STRING):
    """pandas text of either storage (``string[python]`` or ``string[pyarrow]``), or Python strings.

    Pandera's ``pd.StringDtype`` accepts one storage only. Validation holds text as Arrow strings
    (`fraud_assets.core.coercion.TEXT`: a null check reads a bitmap, Arrow's kernels take the
    buffers as they are); a frame read back from Parquet, or built by a user, holds Python
    strings. Both are the contract's text.
    """

    def check(self, pandera_dtype, data_container=None):
        try:
            resolved = pandas_engine.Engine.dtype(pandera_dtype)
        except TypeError:
            return False
        return isinstance(resolved, pandas_engine.STRING) or super().check(pandera_dtype, data_container)

    def __str__(self) -> str:
        return "string"


def _lat(nullable: bool = True) -> pa.Field:
    return pa.Field(ge=-90, le=90, nullable=nullable)


def _lon(nullable: bool = True) -> pa.Field:
    return pa.Field(ge=-180, le=180, nullable=nullable)


def str_matches(series: pd.Series, pattern: str) -> pd.Series:
    """Whether each value matches ``pattern``, vectorised with Arrow (see the module docstring)."""
    text = arrow_text(series)
    if text is None:  # not all text (a frame that skipped coercion): what is not a string fails
        if pd.api.types.is_object_dtype(series.dtype):
            return series.str.match(pattern, na=False).astype(bool)
        return pd.Series(False, index=series.index)
    matched = pc.fill_null(pc.match_substring_regex(text, pattern), False)
    return pd.Series(matched.to_numpy(), index=series.index)


def _matches(*fields: str, pattern: str):
    """A ``str_matches`` check on ``fields`` that reports itself as Pandera's built-in one does."""
    return pa.check(
        *fields, name="str_matches", error=f"str_matches('{pattern}')", statistics={"pattern": pattern}
    )


class _TransactionChecks(pa.DataFrameModel):
    """Row-level consistency checks shared by the raw and validated contracts."""

    @_matches(c.TRANSACTION_ID, c.CARD_ID, c.MERCHANT_ID, pattern=ID_PATTERN)
    def ids_match(cls, series: pd.Series) -> pd.Series:
        return str_matches(series, ID_PATTERN)

    @_matches(c.MERCHANT_COUNTRY, c.CARD_HOME_COUNTRY, c.TXN_COUNTRY, pattern=COUNTRY_PATTERN)
    def countries_match(cls, series: pd.Series) -> pd.Series:
        return str_matches(series, COUNTRY_PATTERN)

    @_matches(c.DEVICE_FINGERPRINT, pattern=DEVICE_PATTERN)
    def device_matches(cls, series: pd.Series) -> pd.Series:
        return str_matches(series, DEVICE_PATTERN)

    @_matches(c.IP_ADDRESS, pattern=IP_PATTERN)
    def ip_matches(cls, series: pd.Series) -> pd.Series:
        return str_matches(series, IP_PATTERN)

    @pa.dataframe_check(name="weekend_consistent_with_day_of_week", ignore_na=False)
    def weekend_consistency(cls, df: pd.DataFrame) -> pd.Series:
        if c.IS_WEEKEND not in df or c.DAY_OF_WEEK not in df:
            return pd.Series(True, index=df.index)
        day = pd.to_numeric(df[c.DAY_OF_WEEK], errors="coerce")
        weekend = df[c.IS_WEEKEND]  # an empty cell passes here (and is derived), a present one is judged
        return weekend.isna() | day.isna() | (day.ge(5) == weekend.fillna(False).astype(bool))

    @pa.dataframe_check(name="hour_of_day_matches_timestamp", ignore_na=False)
    def hour_consistency(cls, df: pd.DataFrame) -> pd.Series:
        if c.HOUR_OF_DAY not in df or c.TIMESTAMP not in df:
            return pd.Series(True, index=df.index)
        hour = pd.to_numeric(df[c.HOUR_OF_DAY], errors="coerce")
        return hour.isna() | df[c.TIMESTAMP].isna() | (hour == df[c.TIMESTAMP].dt.hour)

    @pa.dataframe_check(name="day_of_week_matches_timestamp", ignore_na=False)
    def day_consistency(cls, df: pd.DataFrame) -> pd.Series:
        if c.DAY_OF_WEEK not in df or c.TIMESTAMP not in df:
            return pd.Series(True, index=df.index)
        day = pd.to_numeric(df[c.DAY_OF_WEEK], errors="coerce")
        return day.isna() | df[c.TIMESTAMP].isna() | (day == df[c.TIMESTAMP].dt.dayofweek)

    @pa.dataframe_check(name="label_known_after_transaction", ignore_na=False)
    def label_after_transaction(cls, df: pd.DataFrame) -> pd.Series:
        if c.LABEL_KNOWN_AT not in df or c.TIMESTAMP not in df:
            return pd.Series(True, index=df.index)
        known, ts = df[c.LABEL_KNOWN_AT], df[c.TIMESTAMP]
        return known.isna() | ts.isna() | (known >= ts)

    @pa.dataframe_check(name="online_has_device_fingerprint", ignore_na=False)
    def online_has_device(cls, df: pd.DataFrame) -> pd.Series:
        if c.IS_ONLINE not in df or c.DEVICE_FINGERPRINT not in df:
            return pd.Series(True, index=df.index)
        return ~df[c.IS_ONLINE].fillna(False).astype(bool) | df[c.DEVICE_FINGERPRINT].notna()


class RawTransactionSchema(_TransactionChecks):
    """Transactions as a source delivers them, after column mapping and type coercion.

    The five required columns must be present and non-null; every other column is optional
    and checked when present. `is_fraud` may be null: an unlabelled transaction.
    """

    transaction_id: Series[Text] = pa.Field(unique=True, nullable=False)
    timestamp: Series[pd.Timestamp] = pa.Field(nullable=False)
    card_id: Series[Text] = pa.Field(nullable=False)
    merchant_id: Series[Text] = pa.Field(nullable=False)
    amount: Series[float] = pa.Field(gt=0, le=1_000_000, nullable=False)

    merchant_category: Series[Text] | None = pa.Field(isin=c.MERCHANT_CATEGORIES, nullable=True)
    merchant_country: Series[Text] | None = pa.Field(nullable=True)
    merchant_lat: Series[float] | None = _lat()
    merchant_lon: Series[float] | None = _lon()
    card_home_country: Series[Text] | None = pa.Field(nullable=True)
    card_home_lat: Series[float] | None = _lat()
    card_home_lon: Series[float] | None = _lon()
    txn_country: Series[Text] | None = pa.Field(nullable=True)
    txn_lat: Series[float] | None = _lat()
    txn_lon: Series[float] | None = _lon()
    is_online: Series[pd.BooleanDtype] | None = pa.Field(nullable=True)
    entry_mode: Series[Text] | None = pa.Field(isin=c.ENTRY_MODES, nullable=True)
    device_fingerprint: Series[Text] | None = pa.Field(nullable=True)
    ip_address: Series[Text] | None = pa.Field(nullable=True)
    user_agent: Series[Text] | None = pa.Field(str_length={"max_value": 512}, nullable=True)

    hour_of_day: Series[pd.Int8Dtype] | None = pa.Field(ge=0, le=23, nullable=True)
    day_of_week: Series[pd.Int8Dtype] | None = pa.Field(ge=0, le=6, nullable=True)
    is_weekend: Series[pd.BooleanDtype] | None = pa.Field(nullable=True)
    distance_from_home: Series[float] | None = pa.Field(ge=0, le=20_100, nullable=True)
    is_foreign: Series[pd.BooleanDtype] | None = pa.Field(nullable=True)

    is_fraud: Series[pd.Int8Dtype] | None = pa.Field(isin=[0, 1], nullable=True)
    label_known_at: Series[pd.Timestamp] | None = pa.Field(nullable=True)
    fraud_scenario: Series[Text] | None = pa.Field(isin=c.FRAUD_SCENARIOS, nullable=True)

    class Config:
        name = "RawTransaction"
        description = "Transactions as received, mapped onto fraudops' column names."
        strict = False  # extra columns a user's file carries are kept, never dropped
        coerce = False  # validation coerces first and reports each value that does not parse


class ValidatedTransactionSchema(RawTransactionSchema):
    """Clean transactions: every canonical event and derived column present and typed.

    Derived columns (hour, day of week, weekend, distance, foreign) are computed from their
    inputs where a source did not provide them; rows are ordered by timestamp.
    """

    hour_of_day: Series[pd.Int8Dtype] = pa.Field(ge=0, le=23, nullable=False)
    day_of_week: Series[pd.Int8Dtype] = pa.Field(ge=0, le=6, nullable=False)
    is_weekend: Series[pd.BooleanDtype] = pa.Field(nullable=False)

    @pa.dataframe_check(name="timestamps_ordered")
    def timestamps_ordered(cls, df: pd.DataFrame) -> bool:
        return bool(df[c.TIMESTAMP].is_monotonic_increasing)

    class Config:
        name = "ValidatedTransaction"
        description = "Validated transactions: typed, unique, ordered; what features are built from."
        strict = False
        coerce = False


# Canonical pandas dtypes, used to coerce sources onto the contract.
CANONICAL_DTYPES: dict[str, str] = {
    c.TRANSACTION_ID: "string",
    c.TIMESTAMP: "datetime64[ns]",
    c.CARD_ID: "string",
    c.MERCHANT_ID: "string",
    c.AMOUNT: "float64",
    c.MERCHANT_CATEGORY: "string",
    c.MERCHANT_COUNTRY: "string",
    c.MERCHANT_LAT: "float64",
    c.MERCHANT_LON: "float64",
    c.CARD_HOME_COUNTRY: "string",
    c.CARD_HOME_LAT: "float64",
    c.CARD_HOME_LON: "float64",
    c.TXN_COUNTRY: "string",
    c.TXN_LAT: "float64",
    c.TXN_LON: "float64",
    c.IS_ONLINE: "boolean",
    c.ENTRY_MODE: "string",
    c.DEVICE_FINGERPRINT: "string",
    c.IP_ADDRESS: "string",
    c.USER_AGENT: "string",
    c.HOUR_OF_DAY: "Int8",
    c.DAY_OF_WEEK: "Int8",
    c.IS_WEEKEND: "boolean",
    c.DISTANCE_FROM_HOME: "float64",
    c.IS_FOREIGN: "boolean",
    c.IS_FRAUD: "Int8",
    c.LABEL_KNOWN_AT: "datetime64[ns]",
    c.FRAUD_SCENARIO: "string",
}


class TransactionFeatureSchema(pa.DataFrameModel):
    """Point-in-time features of each transaction, keyed by its ID; what models train on.

    History features a source cannot support (no device column, no labels) are absent.
    """

    transaction_id: Series[Text] = pa.Field(unique=True, nullable=False)
    timestamp: Series[pd.Timestamp] = pa.Field(nullable=False)
    card_id: Series[Text] = pa.Field(nullable=False)
    merchant_id: Series[Text] = pa.Field(nullable=False)
    amount: Series[float] = pa.Field(gt=0, nullable=False)
    transactions_last_1h: Series[float] = pa.Field(ge=0, nullable=False)
    transactions_last_24h: Series[float] = pa.Field(ge=0, nullable=False)
    transactions_last_7d: Series[float] = pa.Field(ge=0, nullable=False)
    transactions_last_30d: Series[float] = pa.Field(ge=0, nullable=False)
    total_amount_last_1h: Series[float] = pa.Field(ge=0, nullable=False)
    total_amount_last_24h: Series[float] = pa.Field(ge=0, nullable=False)
    total_amount_last_7d: Series[float] = pa.Field(ge=0, nullable=False)
    total_amount_last_30d: Series[float] = pa.Field(ge=0, nullable=False)
    avg_amount_last_24h: Series[float] = pa.Field(ge=0, nullable=False)
    avg_amount_last_7d: Series[float] = pa.Field(ge=0, nullable=False)
    avg_amount_last_30d: Series[float] = pa.Field(ge=0, nullable=False)
    amount_to_avg_24h: Series[float] = pa.Field(ge=0, nullable=False)
    amount_to_avg_7d: Series[float] = pa.Field(ge=0, nullable=False)
    amount_to_avg_30d: Series[float] = pa.Field(ge=0, nullable=False)
    seconds_since_last_txn: Series[float] = pa.Field(ge=0, nullable=False)
    is_new_merchant: Series[float] = pa.Field(isin=[0.0, 1.0], nullable=False)
    is_new_device: Series[float] | None = pa.Field(isin=[0.0, 1.0], nullable=False)
    merchant_fraud_rate_1d: Series[float] | None = pa.Field(ge=0, le=1, nullable=False)
    merchant_fraud_rate_7d: Series[float] | None = pa.Field(ge=0, le=1, nullable=False)
    merchant_fraud_rate_30d: Series[float] | None = pa.Field(ge=0, le=1, nullable=False)
    merchant_labelled_1d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_labelled_7d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_labelled_30d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_frauds_1d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_frauds_7d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_frauds_30d: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_days_since_known_fraud: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_known_fraud_streak: Series[float] | None = pa.Field(ge=0, nullable=False)
    merchant_days_since_fraud_run_began: Series[float] | None = pa.Field(ge=0, nullable=False)
    is_fraud: Series[pd.Int8Dtype] | None = pa.Field(isin=[0, 1], nullable=True)
    label_known_at: Series[pd.Timestamp] | None = pa.Field(nullable=True)

    class Config:
        name = "TransactionFeatures"
        description = "Point-in-time history features per transaction, with its event columns and label."
        strict = False
        coerce = False
