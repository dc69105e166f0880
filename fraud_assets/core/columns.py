"""The canonical transaction columns: the one contract every stage shares.

Generated data, a user's landing files (after column mapping), the Pandera
schemas and the feature code all speak these names. Timestamps are naive and
mean the card's local time, so "late at night" is the cardholder's night.
"""

from __future__ import annotations

# Required of every source: without these a row is not a transaction we can use.
TRANSACTION_ID = "transaction_id"
TIMESTAMP = "timestamp"
CARD_ID = "card_id"
MERCHANT_ID = "merchant_id"
AMOUNT = "amount"
REQUIRED_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, TIMESTAMP, CARD_ID, MERCHANT_ID, AMOUNT)

# The label and when it became known (chargeback or confirmation). Optional:
# unlabelled transactions can be scored and monitored, not trained on.
IS_FRAUD = "is_fraud"
LABEL_KNOWN_AT = "label_known_at"
LABEL_COLUMNS: tuple[str, ...] = (IS_FRAUD, LABEL_KNOWN_AT)

# Optional event columns, used when present.
MERCHANT_CATEGORY = "merchant_category"
MERCHANT_COUNTRY = "merchant_country"
MERCHANT_LAT = "merchant_lat"
MERCHANT_LON = "merchant_lon"
CARD_HOME_COUNTRY = "card_home_country"
CARD_HOME_LAT = "card_home_lat"
CARD_HOME_LON = "card_home_lon"
TXN_COUNTRY = "txn_country"  # where the card was used: merchant (card present) or IP (online)
TXN_LAT = "txn_lat"
TXN_LON = "txn_lon"
IS_ONLINE = "is_online"
ENTRY_MODE = "entry_mode"
DEVICE_FINGERPRINT = "device_fingerprint"  # online only; null when the card is present
IP_ADDRESS = "ip_address"  # online only
USER_AGENT = "user_agent"  # online only
FRAUD_SCENARIO = "fraud_scenario"  # ground truth of the simulator; never a feature

# Derived from other columns; validation computes them when a source lacks them
# and rejects rows whose provided values contradict their inputs.
HOUR_OF_DAY = "hour_of_day"
DAY_OF_WEEK = "day_of_week"  # Monday = 0
IS_WEEKEND = "is_weekend"
DISTANCE_FROM_HOME = "distance_from_home"  # km, txn location to card home
IS_FOREIGN = "is_foreign"  # txn_country differs from card_home_country

EVENT_COLUMNS: tuple[str, ...] = (
    MERCHANT_CATEGORY,
    MERCHANT_COUNTRY,
    MERCHANT_LAT,
    MERCHANT_LON,
    CARD_HOME_COUNTRY,
    CARD_HOME_LAT,
    CARD_HOME_LON,
    TXN_COUNTRY,
    TXN_LAT,
    TXN_LON,
    IS_ONLINE,
    ENTRY_MODE,
    DEVICE_FINGERPRINT,
    IP_ADDRESS,
    USER_AGENT,
)
DERIVED_COLUMNS: tuple[str, ...] = (
    HOUR_OF_DAY,
    DAY_OF_WEEK,
    IS_WEEKEND,
    DISTANCE_FROM_HOME,
    IS_FOREIGN,
)
# Column order of generated data and of validated data.
ALL_COLUMNS: tuple[str, ...] = (
    *REQUIRED_COLUMNS,
    *EVENT_COLUMNS,
    *DERIVED_COLUMNS,
    IS_FRAUD,
    LABEL_KNOWN_AT,
    FRAUD_SCENARIO,
)

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "gas_station",
    "pharmacy",
    "clothing",
    "home_improvement",
    "entertainment",
    "travel",
    "online_retail",
    "digital_goods",
    "electronics",
    "jewelry",
)
ENTRY_MODES: tuple[str, ...] = ("chip", "contactless", "swipe", "manual", "ecommerce")
FRAUD_SCENARIOS: tuple[str, ...] = (
    "none",
    "card_testing",
    "compromised_merchant",
    "account_takeover",
    "lost_stolen",
    "new_pattern",  # switched on by a drift knob
)
# ISO 3166-1 alpha-3 codes.
COUNTRIES: tuple[str, ...] = (
    "USA", "CAN", "MEX", "BRA", "ARG", "GBR", "IRL", "FRA", "DEU", "NLD", "ESP", "ITA",
    "POL", "ROU", "UKR", "RUS", "TUR", "NGA", "ZAF", "EGY", "ARE", "IND", "CHN", "JPN",
    "KOR", "SGP", "IDN", "VNM", "PHL", "AUS",
)  # fmt: skip

# "Late night" of the seed: 23:00 to 03:59 local time.
NIGHT_HOURS: frozenset[int] = frozenset({23, 0, 1, 2, 3})
