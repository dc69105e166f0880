"""Public seed API of the transaction generator, plus its command line.

Re-exports ``fraud_assets.core.generator`` (no Dagster import), so notebooks and
scripts can do ``from fraud_assets.generator import FraudDataGenerator``.

Example:
    python -m fraud_assets.generator --rows 100000 --fraud-rate 0.01 --seed 42 \\
        --out transactions.parquet
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import pandas as pd

from fraud_assets.core.columns import (
    ALL_COLUMNS,
    DAY_OF_WEEK,
    HOUR_OF_DAY,
    IS_FRAUD,
    LABEL_KNOWN_AT,
    TIMESTAMP,
)
from fraud_assets.core.generator import (
    DriftKnobs,
    FraudDataGenerator,
    SimulationConfig,
    TransactionSimulator,
    write_frame,
)

__all__ = [
    "DriftKnobs",
    "FraudDataGenerator",
    "SimulationConfig",
    "TransactionSimulator",
    "main",
    "read_transactions",
]

_FORMATS = {".parquet": "parquet", ".csv": "csv"}


def read_transactions(path: str | Path) -> pd.DataFrame:
    """Read a file written by the generator back with the generator's dtypes.

    CSV loses dtypes, so timestamps, int8 columns and nulls are restored here;
    a CSV round trip then equals the original frame.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix != ".csv":
        raise ValueError(f"unsupported file type {path.suffix!r}: use .parquet or .csv")
    df = pd.read_csv(
        path,
        parse_dates=[TIMESTAMP, LABEL_KNOWN_AT],
        float_precision="round_trip",
        keep_default_na=False,
        na_values={"device_fingerprint": [""], "ip_address": [""], "user_agent": [""]},
        dtype={"transaction_id": str, "card_id": str, "merchant_id": str},
    )
    for col in (HOUR_OF_DAY, DAY_OF_WEEK, IS_FRAUD):
        df[col] = df[col].astype("int8")
    for col in ("device_fingerprint", "ip_address", "user_agent"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    for col in (TIMESTAMP, LABEL_KNOWN_AT):
        df[col] = df[col].astype("datetime64[ns]")
    return df[list(ALL_COLUMNS)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fraud_assets.generator",
        description="Generate synthetic credit-card transactions with emergent fraud.",
    )
    p.add_argument("--rows", type=int, default=100_000, help="number of rows (default 100000)")
    p.add_argument("--fraud-rate", type=float, default=0.01, help="0.001..0.05 (default 0.01)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cardholders", type=int, default=10_000)
    p.add_argument("--start-date", type=datetime.date.fromisoformat, default=datetime.date(2026, 1, 1))
    p.add_argument("--out", type=Path, required=True, help="output file, .parquet or .csv")
    d = p.add_argument_group("drift (off by default)")
    d.add_argument("--drift-start", type=datetime.date.fromisoformat, default=None)
    d.add_argument("--amount-multiplier", type=float, default=1.0)
    d.add_argument("--merchant-mix-shift", type=float, default=0.0)
    d.add_argument("--device-mix-shift", type=float, default=0.0)
    d.add_argument("--new-fraud-pattern", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fraud_assets.generator``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    fmt = _FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        parser.error(f"--out must end in .parquet or .csv, got {args.out.name!r}")
    try:
        drift = DriftKnobs(
            start=args.drift_start,
            amount_multiplier=args.amount_multiplier,
            merchant_mix_shift=args.merchant_mix_shift,
            device_mix_shift=args.device_mix_shift,
            new_fraud_pattern=args.new_fraud_pattern,
        )
        gen = FraudDataGenerator(
            n_samples=args.rows,
            fraud_rate=args.fraud_rate,
            n_cardholders=args.cardholders,
            seed=args.seed,
            start_date=args.start_date,
            drift=drift,
        )
    except ValueError as exc:
        parser.error(str(exc))
    df = gen.generate()
    path = write_frame(df, args.out, fmt)
    print(f"rows: {len(df)}")
    print(f"fraud rate: {df[IS_FRAUD].mean():.4%}")
    print(f"path: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
