"""Tests of the transaction simulator: contract, realism, determinism, drift, CLI."""

from __future__ import annotations

import datetime
import re

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core.columns import (
    ALL_COLUMNS,
    COUNTRIES,
    ENTRY_MODES,
    FRAUD_SCENARIOS,
    MERCHANT_CATEGORIES,
    NIGHT_HOURS,
)
from fraud_assets.core.geo import haversine_km
from fraud_assets.core.simulation.fraud import SCENARIOS
from fraud_assets.generator import (
    DriftKnobs,
    FraudDataGenerator,
    SimulationConfig,
    TransactionSimulator,
    main,
    read_transactions,
)

D0 = datetime.date(2026, 1, 1)
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def days(n: int, start: datetime.date = D0) -> tuple[datetime.date, datetime.date]:
    return start, start + datetime.timedelta(days=n - 1)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """Five weeks of default behaviour for 6,000 cardholders (~570k rows)."""
    sim = TransactionSimulator(SimulationConfig(n_cardholders=6_000))
    return sim.generate_days(*days(35))


def prev_hour_count(df: pd.DataFrame) -> np.ndarray:
    """Number of the same card's transactions in the hour before each one."""
    t = df["timestamp"].to_numpy().astype("int64") // 10**9
    card = pd.factorize(df["card_id"])[0].astype(np.int64)
    key = card * 10**11 + t
    order = np.argsort(key, kind="stable")
    ks = key[order]
    out = np.empty(len(df), dtype=np.int64)
    out[order] = np.arange(len(ks)) - np.searchsorted(ks, ks - 3600, side="left")
    return out


# --------------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate", [0.01, 0.003, 0.03])
def test_fraud_rate_is_achieved(rate):
    sim = TransactionSimulator(SimulationConfig(fraud_rate=rate, n_cardholders=10_000, seed=3))
    df = sim.generate_days(*days(28))
    assert df["is_fraud"].mean() == pytest.approx(rate, rel=0.15)
    assert len(df) / 28 == pytest.approx(sim.expected_rows_per_day, rel=0.05)


def test_seed_statistics(data):
    f = data["is_fraud"].to_numpy() == 1
    amount = data["amount"].to_numpy()
    night = data["hour_of_day"].isin(NIGHT_HOURS).to_numpy()
    foreign = data["is_foreign"].to_numpy()
    vel = prev_hour_count(data)
    assert 4.0 <= amount[f].mean() / amount[~f].mean() <= 6.5
    assert 0.62 <= night[f].mean() <= 0.80
    assert night[~f].mean() < 0.15
    assert 0.50 <= foreign[f].mean() <= 0.70
    assert 0.08 <= foreign[~f].mean() <= 0.16  # ~85-90% of legit is domestic
    assert vel[f].mean() / vel[~f].mean() >= 7.0
    homes = data.drop_duplicates("card_id")["card_home_country"]
    assert 0.65 <= (homes == "USA").mean() <= 0.75
    assert homes.nunique() >= 8
    per_card_day = data.groupby([data["card_id"], data["timestamp"].dt.date]).size()
    assert 2.0 <= len(data) / (6_000 * 35) <= 3.2
    assert per_card_day.max() > 8  # rate heterogeneity
    weekend = data.groupby(data["is_weekend"])["transaction_id"].size() / [25, 10]
    assert weekend[True] > 1.1 * weekend[False]
    shares = data.loc[f, "fraud_scenario"].value_counts(normalize=True)
    assert set(shares.index) == {
        "card_testing",
        "compromised_merchant",
        "account_takeover",
        "lost_stolen",
    }
    for name, (_, _, share) in SCENARIOS.items():
        assert shares[name] == pytest.approx(share, abs=0.05), name
    # some fraud looks entirely ordinary, but little enough that 90% recall stays reachable
    assert 0.03 <= shares["lost_stolen"] <= 0.08


def test_no_single_column_separates(data):
    from sklearn.metrics import roc_auc_score

    y = data["is_fraud"].to_numpy()
    for col in ("amount", "hour_of_day", "distance_from_home", "is_foreign", "is_online"):
        auc = roc_auc_score(y, data[col].astype(float))
        assert max(auc, 1 - auc) < 0.95, col
    # legit oddities exist: travel abroad, night owls, big tickets, new devices
    legit = data[data["is_fraud"] == 0]
    assert (legit["distance_from_home"] > 1000).mean() > 0.05
    assert legit["hour_of_day"].isin(NIGHT_HOURS).mean() > 0.03
    assert (legit["amount"] > 5 * legit["amount"].median()).mean() > 0.01


# ------------------------------------------------------------------- scenarios


def test_card_testing_signature(data):
    ct = data[data["fraud_scenario"] == "card_testing"]
    assert ct["is_online"].all()
    # mostly from high-risk countries, a quarter through proxies in the card's own country
    assert 0.6 < ct["is_foreign"].mean() < 0.9
    small = ct[ct["amount"] < 5.01]
    assert (small["merchant_category"] == "digital_goods").all()
    for _, g in list(ct.groupby("card_id"))[:50]:
        g = g.sort_values("timestamp")
        probes = g[g["amount"] < 5.01]
        big = g[g["amount"] >= 50]
        if len(big) == 0 or len(probes) < 4:
            continue
        span = probes["timestamp"].max() - probes["timestamp"].min()
        assert span < pd.Timedelta(hours=1) or g["timestamp"].dt.date.nunique() > 1
        assert big["timestamp"].min() > probes["timestamp"].min()
        assert g["device_fingerprint"].nunique() <= 3
    assert ct.loc[ct["amount"] >= 50, "amount"].median() > 300


def test_account_takeover_signature(data):
    ato = data[data["fraud_scenario"] == "account_takeover"]
    assert ato["is_online"].all()
    assert ato["is_foreign"].mean() > 0.7
    assert ato["amount"].median() > 4 * data.loc[data["is_fraud"] == 0, "amount"].median()
    # devices and user agents never used by the card before the takeover
    first = ato.groupby("card_id")["timestamp"].min()
    before = data.merge(first.rename("t_ato"), left_on="card_id", right_index=True)
    before = before[(before["timestamp"] < before["t_ato"]) & before["is_online"]]
    seen = set(zip(before["card_id"], before["device_fingerprint"], strict=True))
    new_dev = [(c, d) not in seen for c, d in zip(ato["card_id"], ato["device_fingerprint"], strict=True)]
    assert np.mean(new_dev) > 0.95
    own_ua = before.groupby("card_id")["user_agent"].agg(set)
    rows = ato[ato["card_id"].isin(own_ua.index)].drop_duplicates("card_id")
    diff = [ua not in own_ua[c] for c, ua in zip(rows["card_id"], rows["user_agent"], strict=True)]
    assert np.mean(diff) > 0.6


def test_compromised_merchant_signature(data):
    cm = data[data["fraud_scenario"] == "compromised_merchant"]
    assert not cm["is_online"].any()
    assert (cm["entry_mode"] == "swipe").mean() > 0.5
    # every bad card visited a shop days before that other bad cards also visited
    first_bad = cm.groupby("card_id")["timestamp"].min()
    hist = data.merge(first_bad.rename("t_bad"), left_on="card_id", right_index=True)
    visits = hist[(hist["timestamp"] < hist["t_bad"] - pd.Timedelta(days=1)) & (hist["is_fraud"] == 0)]
    visits = visits.drop_duplicates(["card_id", "merchant_id"])
    shared = visits.groupby("merchant_id")["card_id"].nunique()
    breached = set(shared[shared >= 3].index)
    has_breached_visit = visits[visits["merchant_id"].isin(breached)].groupby("card_id").size()
    early = first_bad[first_bad > first_bad.min() + pd.Timedelta(days=14)].index
    assert has_breached_visit.reindex(early).notna().mean() > 0.9
    # merchant risk emerges: cash-out shops concentrate fraud
    per_merchant = cm.groupby("merchant_id").size().sort_values(ascending=False)
    assert per_merchant.head(60).sum() > 0.4 * len(cm)


def test_lost_stolen_looks_ordinary(data):
    ls = data[data["fraud_scenario"] == "lost_stolen"]
    legit = data[data["is_fraud"] == 0]
    assert not ls["is_foreign"].any() and not ls["is_online"].any()
    assert ls["hour_of_day"].isin(NIGHT_HOURS).mean() < 0.15
    assert ls["amount"].median() < 2.5 * legit["amount"].median()
    assert ls["distance_from_home"].median() < 60


# ---------------------------------------------------------------- the contract


def test_column_contract(data):
    df = data
    assert tuple(df.columns) == ALL_COLUMNS
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    assert df["timestamp"].is_monotonic_increasing
    key = df[["timestamp", "transaction_id"]]
    assert key.equals(key.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True))
    for col in ("timestamp", "label_known_at"):
        assert df[col].dtype == "datetime64[ns]"
    for col in ("is_online", "is_weekend", "is_foreign"):
        assert df[col].dtype == np.bool_
    for col in ("hour_of_day", "day_of_week", "is_fraud"):
        assert df[col].dtype == np.int8
    for col in ("amount", "merchant_lat", "txn_lon", "distance_from_home", "card_home_lat"):
        assert df[col].dtype == np.float64
    obj = [c for c in ALL_COLUMNS if df[c].dtype == object]
    assert len(obj) == 12
    sample = df.sample(2000, random_state=0)
    for c in obj:
        assert all(v is None or type(v) is str for v in sample[c])
    assert (df["amount"] > 0).all() and np.allclose(df["amount"], df["amount"].round(2))
    online = df["is_online"]
    for c in ("device_fingerprint", "ip_address", "user_agent"):
        assert df.loc[online, c].notna().all() and df.loc[~online, c].isna().all()
    assert ((df["entry_mode"] == "ecommerce") == online).all()
    assert set(df["entry_mode"]) <= set(ENTRY_MODES)
    assert set(df["merchant_category"]) <= set(MERCHANT_CATEGORIES)
    assert set(df["fraud_scenario"]) <= set(FRAUD_SCENARIOS)
    assert (df.loc[df["is_fraud"] == 0, "fraud_scenario"] == "none").all()
    assert (df.loc[df["is_fraud"] == 1, "fraud_scenario"] != "none").all()
    for c in ("merchant_country", "card_home_country", "txn_country"):
        assert set(df[c]) <= set(COUNTRIES)
    ts = df["timestamp"]
    assert (df["hour_of_day"] == ts.dt.hour).all()
    assert (df["day_of_week"] == ts.dt.dayofweek).all()
    assert (df["is_weekend"] == (ts.dt.dayofweek >= 5)).all()
    assert (df["is_foreign"] == (df["txn_country"] != df["card_home_country"])).all()
    dist = haversine_km(df["txn_lat"], df["txn_lon"], df["card_home_lat"], df["card_home_lon"])
    np.testing.assert_array_equal(df["distance_from_home"], dist)  # the same function of the same values
    cp = ~online
    assert (df.loc[cp, "txn_lat"] == df.loc[cp, "merchant_lat"]).all()
    assert (df.loc[cp, "txn_country"] == df.loc[cp, "merchant_country"]).all()
    assert (df["label_known_at"] >= df["timestamp"]).all()
    legit_delay = (df["label_known_at"] - df["timestamp"])[df["is_fraud"] == 0]
    assert (legit_delay == pd.Timedelta(days=7)).all()
    fraud_delay = (df["label_known_at"] - df["timestamp"])[df["is_fraud"] == 1]
    assert fraud_delay.min() >= pd.Timedelta(days=1) and fraud_delay.max() <= pd.Timedelta(days=60)
    assert pd.Timedelta(days=6) < fraud_delay.median() < pd.Timedelta(days=14)
    assert df["transaction_id"].is_unique
    patterns = {
        "transaction_id": r"^TXN\d+$",
        "card_id": r"^CARD\d+$",
        "merchant_id": r"^MER\d+$",
        "device_fingerprint": r"^[0-9a-f]{16}$",
        "ip_address": r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$",
    }
    for col, pat in patterns.items():
        values = df[col].dropna()
        assert values.str.fullmatch(pat).all(), col
        assert values.str.fullmatch(ID_RE).all(), col
    octets = df["ip_address"].dropna().str.split(".", expand=True).astype(int)
    assert octets.le(255).all().all()


def test_online_location_is_ip_city(data):
    on = data[data["is_online"]]
    per_ip = on.groupby("ip_address")[["txn_country", "txn_lat"]].nunique()
    assert (per_ip == 1).all().all()  # an IP geolocates to one place
    home = on[~on["is_foreign"]]
    assert home["distance_from_home"].median() < 30


# ------------------------------------------------------------- reproducibility


def test_determinism_and_day_by_day_equals_together():
    cfg = SimulationConfig(n_cardholders=1_500, seed=11)
    start, end = days(20)
    together = TransactionSimulator(cfg).generate_days(start, end)
    again = TransactionSimulator(cfg).generate_days(start, end)
    pd.testing.assert_frame_equal(together, again)
    fresh = TransactionSimulator(cfg)
    one_by_one = pd.concat(
        [fresh.generate_day(start + datetime.timedelta(days=i)) for i in range(19, -1, -1)][::-1],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(together, one_by_one)
    # a day alone, on a cold simulator, sees episodes started on earlier days
    day = start + datetime.timedelta(days=15)
    alone = TransactionSimulator(cfg).generate_day(day)
    part = together[together["timestamp"].dt.date == day].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, part)
    assert (alone["fraud_scenario"] == "compromised_merchant").any()
    other = TransactionSimulator(SimulationConfig(n_cardholders=1_500, seed=12)).generate_day(day)
    assert not other["amount"].equals(alone["amount"].iloc[: len(other)])


def test_transaction_ids_unique_across_days():
    sim = TransactionSimulator(SimulationConfig(n_cardholders=500))
    a = sim.generate_day(D0)
    b = sim.generate_day(D0 + datetime.timedelta(days=1))
    assert not set(a["transaction_id"]) & set(b["transaction_id"])


# ----------------------------------------------------------------------- drift

DRIFT_START = D0 + datetime.timedelta(days=10)


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return TransactionSimulator(SimulationConfig(n_cardholders=3_000)).generate_days(*days(20))


def _drifted(**knobs) -> pd.DataFrame:
    drift = DriftKnobs(start=DRIFT_START, **knobs)
    cfg = SimulationConfig(n_cardholders=3_000, drift=drift)
    return TransactionSimulator(cfg).generate_days(*days(20))


def _split(df):
    before = df[df["timestamp"].dt.date < DRIFT_START].reset_index(drop=True)
    after = df[df["timestamp"].dt.date >= DRIFT_START].reset_index(drop=True)
    return before, after


@pytest.mark.parametrize(
    "knobs",
    [
        {"amount_multiplier": 1.6},
        {"merchant_mix_shift": 0.6},
        {"device_mix_shift": 0.7},
        {"new_fraud_pattern": True},
    ],
)
def test_drift_is_off_before_start(baseline, knobs):
    b0, _ = _split(baseline)
    d0, _ = _split(_drifted(**knobs))
    pd.testing.assert_frame_equal(b0, d0)


def test_drift_amount_multiplier(baseline):
    _, b1 = _split(baseline)
    _, d1 = _split(_drifted(amount_multiplier=1.6))
    assert d1["amount"].median() / b1["amount"].median() == pytest.approx(1.6, rel=0.03)
    pd.testing.assert_series_equal(d1["merchant_id"], b1["merchant_id"])


def test_drift_merchant_mix(baseline):
    _, b1 = _split(baseline)
    _, d1 = _split(_drifted(merchant_mix_shift=0.6))
    assert d1["is_online"].mean() > b1["is_online"].mean() + 0.15
    cats = ["online_retail", "electronics", "digital_goods"]
    assert d1["merchant_category"].isin(cats).mean() > b1["merchant_category"].isin(cats).mean() + 0.15


def test_drift_device_mix(baseline):
    b0, b1 = _split(baseline)
    _, d1 = _split(_drifted(device_mix_shift=0.7))
    known = set(baseline["user_agent"].dropna())
    new_ua = ~d1.loc[d1["is_online"], "user_agent"].isin(known)
    assert 0.5 < new_ua.mean() < 0.8
    assert not (~b1.loc[b1["is_online"], "user_agent"].isin(set(b0["user_agent"].dropna()))).any()


def test_drift_new_pattern(baseline):
    _, b1 = _split(baseline)
    _, d1 = _split(_drifted(new_fraud_pattern=True))
    assert "new_pattern" not in set(baseline["fraud_scenario"])
    new = d1[d1["fraud_scenario"] == "new_pattern"]
    assert 0.15 < len(new) / d1["is_fraud"].sum() < 0.35
    assert new["is_online"].all() and not new["is_foreign"].any()
    assert not new["hour_of_day"].isin(NIGHT_HOURS).any()
    assert (new["merchant_category"] == "entertainment").all()
    # a category that was clean before
    old_fraud = baseline[(baseline["is_fraud"] == 1) & baseline["is_online"]]
    assert not (old_fraud["merchant_category"] == "entertainment").any()
    assert d1["is_fraud"].mean() == pytest.approx(b1["is_fraud"].mean(), rel=0.25)


# ------------------------------------------------------------ invalid arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fraud_rate": 0.0009},
        {"fraud_rate": 0.051},
        {"n_cardholders": 0},
        {"n_merchants": -1},
        {"transactions_per_card_per_day": 0},
        {"legit_label_delay_days": -1},
        {"seed": -1},
    ],
)
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        SimulationConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount_multiplier": 0},
        {"amount_multiplier": float("nan")},
        {"merchant_mix_shift": 1.5},
        {"device_mix_shift": -0.1},
        {"start": None, "new_fraud_pattern": True},
    ],
)
def test_invalid_drift_raises(kwargs):
    with pytest.raises(ValueError):
        DriftKnobs(**{"start": D0, **kwargs})


def test_invalid_generator_arguments(tmp_path):
    with pytest.raises(ValueError, match="fraud_rate"):
        FraudDataGenerator(fraud_rate=0.2)
    with pytest.raises(ValueError, match="n_samples"):
        FraudDataGenerator(n_samples=0)
    gen = FraudDataGenerator(n_samples=10, n_cardholders=50, output_dir=tmp_path)
    with pytest.raises(ValueError, match="file_format"):
        gen.save(gen.generate(), file_format="xlsx")
    with pytest.raises(ValueError):
        TransactionSimulator().generate_days(D0, D0 - datetime.timedelta(days=1))


# ---------------------------------------------------------- seed API and CLI


def test_fraud_data_generator_exact_rows_and_save(tmp_path):
    gen = FraudDataGenerator(n_samples=12_345, n_cardholders=800, output_dir=tmp_path)
    df = gen.generate()
    assert len(df) == 12_345 and tuple(df.columns) == ALL_COLUMNS
    assert df["timestamp"].dt.date.min() == D0
    assert df["timestamp"].is_monotonic_increasing
    paths = gen.save(df, file_format="both")
    assert [p.name for p in paths] == ["fraud_20260101.parquet", "fraud_20260101.csv"]
    for p in paths:
        pd.testing.assert_frame_equal(read_transactions(p), df)


def test_cli_writes_parquet_and_csv(tmp_path, capsys):
    outs = {}
    for ext in ("parquet", "csv"):
        out = tmp_path / f"tx.{ext}"
        argv = ["--rows", "5000", "--fraud-rate", "0.02", "--seed", "5", "--cardholders", "500"]
        assert main([*argv, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "rows: 5000" in printed and str(out) in printed and "fraud rate" in printed
        outs[ext] = read_transactions(out)
    pd.testing.assert_frame_equal(outs["parquet"], outs["csv"])
    expected = FraudDataGenerator(n_samples=5000, fraud_rate=0.02, seed=5, n_cardholders=500)
    pd.testing.assert_frame_equal(outs["parquet"], expected.generate())
    with pytest.raises(SystemExit):
        main(["--rows", "10", "--out", str(tmp_path / "tx.json")])
    with pytest.raises(SystemExit):
        main(["--rows", "10", "--fraud-rate", "0.5", "--out", str(tmp_path / "tx.csv")])


def test_cli_drift_flags(tmp_path):
    out = tmp_path / "d.parquet"
    argv = ["--rows", "20000", "--cardholders", "1000", "--out", str(out)]
    argv += ["--drift-start", "2026-01-03", "--new-fraud-pattern", "--amount-multiplier", "2"]
    assert main(argv) == 0
    df = read_transactions(out)
    assert (df["fraud_scenario"] == "new_pattern").any()
    assert not re.search("new_pattern", " ".join(df.loc[df["timestamp"] < "2026-01-03", "fraud_scenario"]))


# ---------------------------------------------------------------- realism gap


def _features(df: pd.DataFrame) -> pd.DataFrame:
    """Raw event columns plus simple per-card history a fraud team would compute."""
    out = pd.DataFrame(index=df.index)
    for c in ("amount", "hour_of_day", "day_of_week", "distance_from_home"):
        out[c] = df[c].astype(float)
    for c in ("is_online", "is_foreign"):
        out[c] = df[c].astype(int)
    out["entry"] = pd.factorize(df["entry_mode"], sort=True)[0]
    out["category"] = pd.factorize(df["merchant_category"], sort=True)[0]
    card = pd.factorize(df["card_id"])[0]
    out["n_prev_hour"] = prev_hour_count(df)
    by_card = df.groupby(card)
    n_prev = by_card.cumcount()
    mean_prev = (by_card["amount"].cumsum() - df["amount"]) / n_prev.replace(0, np.nan)
    out["amount_vs_card_mean"] = df["amount"] / mean_prev
    first_device = df.groupby([card, df["device_fingerprint"].fillna("")]).cumcount() == 0
    out["new_device"] = (df["is_online"] & first_device).astype(int)
    out["new_merchant"] = (df.groupby([card, df["merchant_id"]]).cumcount() == 0).astype(int)
    since = by_card["timestamp"].diff().dt.total_seconds()
    out["since_prev_s"] = since.fillna(1e7)
    return out


RAW = ["amount", "hour_of_day", "day_of_week", "distance_from_home", "is_online", "is_foreign"]


def test_realism_gap(data):
    """Single columns and a stump-like tree must fall far short of a boosted model
    on history features: the data is neither trivial nor useless."""
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score
    from sklearn.tree import DecisionTreeClassifier

    X, y = _features(data), data["is_fraud"].to_numpy()
    train = (data["timestamp"] < pd.Timestamp("2026-01-25")).to_numpy()  # time split
    test = ~train

    def ap(score) -> float:
        return average_precision_score(y[test], score)

    best_single = max(max(ap(X[c][test]), ap(-X[c][test])) for c in [*RAW, "entry", "category"])
    raw = [*RAW, "entry", "category"]
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X.loc[train, raw], y[train])
    tree_ap = ap(tree.predict_proba(X.loc[test, raw])[:, 1])
    gbm = lgb.LGBMClassifier(
        n_estimators=120,
        learning_rate=0.1,
        num_leaves=31,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        n_jobs=2,
        random_state=0,
        verbose=-1,
    )
    gbm.fit(X[train], y[train])
    gbm_ap = ap(gbm.predict_proba(X[test])[:, 1])
    print(f"best single AP {best_single:.3f}, depth-2 tree AP {tree_ap:.3f}, GBM AP {gbm_ap:.3f}")
    assert best_single < 0.30
    assert tree_ap < 0.40
    assert 0.60 < gbm_ap < 0.97  # not useless, not trivially separable (lost/stolen)
    assert gbm_ap - max(best_single, tree_ap) > 0.3
