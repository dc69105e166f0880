"""Validate a transaction file from the command line, as the seed guide's validator does.

    python -m fraud_assets.validator data/raw/fraud_20260101.csv

Prints every failed check with its column, the number of rows and example values, and exits
with 1 when the file fails validation (2 when it cannot be read at all).
"""

from __future__ import annotations

import argparse
import sys

from fraud_assets.core.ingest import LandingFileError, LandingSettings, read_landing_file
from fraud_assets.core.validation import LINEAGE_COLUMNS, check_report
from fraud_assets.core.value_rules import UNMAPPED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraud_assets.validator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("file", help="a .csv or .parquet file of transactions")
    parser.add_argument("--schema", choices=("raw", "validated"), default="raw")
    parser.add_argument("--mapping", help='JSON column mapping, e.g. \'{"amount": "amt"}\'')
    parser.add_argument("--encoding", default="utf-8", help="CSV text encoding (default utf-8)")
    parser.add_argument("--label-delay-days", type=float, default=7.0)
    args = parser.parse_args(argv)
    try:
        settings = LandingSettings.from_json(
            args.mapping, encoding=args.encoding, label_delay_days=args.label_delay_days
        )
        frame = read_landing_file(args.file, settings)
    except (LandingFileError, ValueError, OSError) as err:
        print(f"cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    # lineage is not data; values no value rule mapped stay, to be reported with their rows
    frame = frame.drop(columns=[col for col in LINEAGE_COLUMNS if col in frame and col != UNMAPPED])
    report = check_report(frame, args.schema)
    if not report:
        print(f"{args.file}: valid ({len(frame)} rows, schema {args.schema})")
        return 0
    print(f"{args.file}: INVALID ({len(frame)} rows, schema {args.schema}); failed checks:")
    for line in report:
        print(f"  - {line}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
