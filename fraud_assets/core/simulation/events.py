"""Events as a struct of integer/float arrays, and their assembly into the frame.

Legit days and fraud episodes both produce ``Events`` (dicts of equal-length
numpy arrays). Only ``build_frame`` turns codes into strings, once for all days,
by indexing the population's object arrays: this is what keeps a million rows
within a couple of seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_assets.core import columns as C
from fraud_assets.core.geo import haversine_km

from . import places as P
from .population import Population

# field -> dtype. t and delay are whole seconds (t since 1970-01-01, local time).
FIELDS: dict[str, str] = {
    "t": "int64",
    "card": "int64",
    "merchant": "int64",
    "online": "bool",
    "device": "int64",  # -1 = none (card present)
    "ip": "int64",  # -1 = none
    "ua": "int64",  # -1 = none
    "amount": "float64",
    "entry": "int8",
    "fraud": "int8",
    "scenario": "int8",
    "delay": "int64",  # seconds until the label is known
}
Events = dict[str, np.ndarray]
DAY = 86_400
EPOCH_ORDINAL = 719_163  # datetime.date(1970, 1, 1).toordinal()


def empty() -> Events:
    return {k: np.empty(0, dtype=v) for k, v in FIELDS.items()}


def make(**cols) -> Events:
    """Build events; scalars are broadcast to the length of ``t``."""
    n = len(cols["t"])
    return {k: np.broadcast_to(np.asarray(cols[k], dtype=v), (n,)).copy() for k, v in FIELDS.items()}


def concat(parts: list[Events]) -> Events:
    parts = [p for p in parts if len(p["t"])]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}


def take(ev: Events, idx: np.ndarray) -> Events:
    return {k: v[idx] for k, v in ev.items()}


def transaction_ids(ordinal: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """``TXN`` + 6-digit day ordinal + 7-digit sequence, built without per-row formatting."""
    num = ordinal.astype(np.int64) * 10_000_000 + seq.astype(np.int64)
    mat = np.empty((len(num), 16), dtype=np.uint8)
    mat[:, :3] = np.frombuffer(b"TXN", dtype=np.uint8)
    for pos in range(15, 2, -1):
        mat[:, pos] = 48 + num % 10
        num //= 10
    return mat.view("S16").ravel().astype("U16").astype(object)


def build_frame(pop: Population, ev: Events, ordinal: np.ndarray, seq: np.ndarray) -> pd.DataFrame:
    """Assemble sorted events of any number of days into the canonical frame."""
    t = ev["t"]
    card, mer, ip, online = ev["card"], ev["merchant"], ev["ip"], ev["online"]
    countries = np.array(C.COUNTRIES, dtype=object)
    ip_safe = np.where(online, ip, 0)
    txn_lat = np.where(online, pop.ip_lat[ip_safe], pop.mer_lat[mer])
    txn_lon = np.where(online, pop.ip_lon[ip_safe], pop.mer_lon[mer])
    txn_country = np.where(online, pop.ip_country[ip_safe], pop.mer_country[mer])
    home_country = pop.card_country[card]
    home_lat, home_lon = pop.card_lat[card], pop.card_lon[card]
    days = t // DAY
    ua_str = np.array([*P.USER_AGENTS, None], dtype=object)
    dow = ((days + 3) % 7).astype(np.int8)
    cols = {
        C.TRANSACTION_ID: transaction_ids(ordinal, seq),
        C.TIMESTAMP: (t * 1_000_000_000).view("M8[ns]"),
        C.CARD_ID: pop.card_ids[card],
        C.MERCHANT_ID: pop.mer_ids[mer],
        C.AMOUNT: ev["amount"],
        C.MERCHANT_CATEGORY: np.array(C.MERCHANT_CATEGORIES, dtype=object)[pop.mer_cat[mer]],
        C.MERCHANT_COUNTRY: countries[pop.mer_country[mer]],
        C.MERCHANT_LAT: pop.mer_lat[mer],
        C.MERCHANT_LON: pop.mer_lon[mer],
        C.CARD_HOME_COUNTRY: countries[home_country],
        C.CARD_HOME_LAT: home_lat,
        C.CARD_HOME_LON: home_lon,
        C.TXN_COUNTRY: countries[txn_country],
        C.TXN_LAT: txn_lat,
        C.TXN_LON: txn_lon,
        C.IS_ONLINE: online,
        C.ENTRY_MODE: np.array(C.ENTRY_MODES, dtype=object)[ev["entry"]],
        C.DEVICE_FINGERPRINT: pop.dev_str[ev["device"]],
        C.IP_ADDRESS: pop.ip_str[ip],
        C.USER_AGENT: ua_str[ev["ua"]],
        C.HOUR_OF_DAY: ((t % DAY) // 3600).astype(np.int8),
        C.DAY_OF_WEEK: dow,
        C.IS_WEEKEND: dow >= 5,
        C.DISTANCE_FROM_HOME: haversine_km(txn_lat, txn_lon, home_lat, home_lon),
        C.IS_FOREIGN: txn_country != home_country,
        C.IS_FRAUD: ev["fraud"],
        C.LABEL_KNOWN_AT: ((t + ev["delay"]) * 1_000_000_000).view("M8[ns]"),
        C.FRAUD_SCENARIO: np.array(C.FRAUD_SCENARIOS, dtype=object)[ev["scenario"]],
    }
    # copy=False keeps one block per column: consolidating 1M-row object blocks
    # would cost more than generating the data.
    return pd.DataFrame({name: cols[name] for name in C.ALL_COLUMNS}, copy=False)
