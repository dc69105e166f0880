"""How high Card Precision@100 can go on the Handbook file without a leak.

Two oracles scored with the book's protocol: one that knows every label (the ceiling of any
scorer), and one that knows exactly the frauds that labels known before the day can reveal:
scenario 1 (amount) and 3 (the card's own amounts) frauds, and scenario 2 frauds at a terminal
whose newest known labels are fraud (a compromised terminal's first days, before any of its
labels has arrived, look like any other terminal's). A model without a leak does not find
more fraudulent cards a day than the second oracle, short of luck on the unknowable ones.

    .venv/bin/python -m bench.external.ceiling 0 1 2 3 4      # seeds
"""

from __future__ import annotations

import sys

from bench.external.ablation import external_frame, protocol_test_rows, with_features
from bench.external.protocol import card_precision_at_k
from bench.external.run import FULL
from bench.external.simulator import simulate
from fraud_assets.core import columns as c


def ceiling(seed: int) -> list[dict[str, float]]:
    scenario = simulate(FULL.simulator(seed))["TX_FRAUD_SCENARIO"].to_numpy()
    raw, weeks = external_frame(seed, quick=False)
    features = with_features(raw, recency=False)
    out = []
    for week in weeks:
        rows = protocol_test_rows(features, week)
        test = features.iloc[rows]
        y = test[c.IS_FRAUD].astype(int).to_numpy()
        knowable = (y == 1) & ((scenario[rows] != 2) | (test["merchant_known_fraud_streak"] > 0).to_numpy())
        days, cards = test[c.TIMESTAMP].dt.floor("D").to_numpy(), test[c.CARD_ID].to_numpy()
        out.append(
            {
                "seed": seed,
                "week": str(week[0].date()),
                "cp100_every_label": card_precision_at_k(days, cards, y, y.astype(float))[1],
                "cp100_knowable": card_precision_at_k(days, cards, y, knowable.astype(float))[1],
                "frauds": int(y.sum()),
                "knowable_frauds": int(knowable.sum()),
            }
        )
        print(out[-1], flush=True)
    return out


def main(argv: list[str]) -> int:
    rows = [row for seed in map(int, argv or ["0"]) for row in ceiling(seed)]
    for key in ("cp100_every_label", "cp100_knowable"):
        print(f"mean {key}: {sum(r[key] for r in rows) / len(rows):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
