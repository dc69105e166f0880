"""How assets read the label feed, `fraud_labels`: the input of a window of its days, or all of
them, and a loaded frame that may be empty (no label reported yet).

Kept apart from the asset (`fraud_assets.defs.labels`) because it defines no partitioned asset:
`training_data`'s module may import it before the daily partitions are defined (first_look).
"""

import dagster as dg
import pandas as pd

from fraud_assets.core.labels import empty_labels

FRAUD_LABELS = "fraud_labels"
# How an input reads the feed: the days that exist; none, or none yet, is an empty frame.
FEED_INPUT = {"allow_missing_partitions": True, "empty_when_missing": True}


def labels_input(start_offset: int, end_offset: int) -> dg.AssetIn:
    """`fraud_labels` of the days ``start_offset..end_offset`` around the reading partition: no
    day, or none yet, is an empty feed."""
    return dg.AssetIn(
        FRAUD_LABELS,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
        ),
        metadata=FEED_INPUT,
    )


ALL_LABELS = dg.AssetIn(FRAUD_LABELS, metadata=FEED_INPUT)


def fed_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """A loaded `fraud_labels` frame, or the feed's columns when nothing is there yet."""
    return frame if len(frame.columns) else empty_labels()
