"""The simulated world: cardholders, merchants, devices and IP addresses.

Built once per seed from its own random stream, so every day of transactions
indexes into the same population. Strings (IDs, fingerprints, IPs) live in
per-population object arrays; events carry integer codes and only the final
frame indexes into these arrays, which keeps generation vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import places as P

N_FAVOURITES = 8  # favourite local shops per cardholder
IPS_PER_CITY = 64  # public IPs per city (hotels, proxies, fraudster hosts)
N_FRAUDSTER_DEVICES = 2_000
POPULATION_STREAM = 0


@dataclass(frozen=True)
class Population:
    """Arrays describing the world; index arrays of events point into these."""

    # cardholders (sorted by home city so a city's cards form a contiguous range)
    card_ids: np.ndarray
    card_city: np.ndarray
    card_country: np.ndarray
    card_lat: np.ndarray
    card_lon: np.ndarray
    card_rate: np.ndarray  # mean legit transactions per day
    card_hour_center: np.ndarray
    card_hour_sd: np.ndarray
    card_spend: np.ndarray  # multiplier of category median amounts
    card_p_online: np.ndarray
    card_dev_start: np.ndarray  # first own device; devices are contiguous
    card_n_dev: np.ndarray
    card_favs: np.ndarray  # (n_cards, N_FAVOURITES) merchant indices
    city_card_start: np.ndarray
    city_card_count: np.ndarray
    # merchants
    mer_ids: np.ndarray
    mer_cat: np.ndarray
    mer_country: np.ndarray
    mer_lat: np.ndarray
    mer_lon: np.ndarray
    mer_online: np.ndarray
    cp_sorted: np.ndarray  # card-present merchant indices sorted by city
    city_cp_start: np.ndarray
    city_cp_count: np.ndarray
    city_cashout: np.ndarray  # one electronics/jewelry shop per city
    online_merchants: np.ndarray
    online_cum_w: np.ndarray  # popularity, cumulative, for searchsorted
    online_by_cat: dict[int, np.ndarray]
    # devices: [own | fraudster | fresh (legit new devices, new pattern) | drift]
    dev_str: np.ndarray  # object, with a trailing None so code -1 is null
    dev_ua: np.ndarray
    dev_home_ip: np.ndarray
    fraud_dev_start: int
    fresh_dev_start: int
    n_fresh_dev: int
    drift_dev_start: int
    # IPs: [device home IPs | IPS_PER_CITY per city]
    ip_str: np.ndarray  # object, trailing None
    ip_country: np.ndarray
    ip_lat: np.ndarray
    ip_lon: np.ndarray
    city_ip_start: int

    @property
    def n_cards(self) -> int:
        return len(self.card_ids)

    def random_city_ip(self, rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
        """A public IP located in each given city."""
        return self.city_ip_start + city * IPS_PER_CITY + rng.integers(0, IPS_PER_CITY, len(city))

    def random_cp_merchant(self, rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
        """A uniformly random card-present merchant in each given city."""
        off = (rng.random(len(city)) * self.city_cp_count[city]).astype(np.int64)
        return self.cp_sorted[self.city_cp_start[city] + off]

    def random_online_merchant(self, rng: np.random.Generator, cats: tuple[int, ...], n: int):
        """Uniform online merchants among the given categories."""
        pool = np.concatenate([self.online_by_cat[c] for c in cats])
        return pool[rng.integers(0, len(pool), n)]

    def random_city_card(self, rng: np.random.Generator, city: np.ndarray) -> np.ndarray:
        """A uniformly random cardholder living in each given city (city must have cards)."""
        off = (rng.random(len(city)) * self.city_card_count[city]).astype(np.int64)
        return self.city_card_start[city] + off


def _hex_strings(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.bytes(8 * n)
    return [raw[i : i + 8].hex() for i in range(0, 8 * n, 8)]


def _ip_strings(rng: np.random.Generator, n: int) -> list[str]:
    octets = rng.integers(1, 255, size=(n, 4))
    octets[:, 0] = rng.choice([23, 45, 66, 73, 81, 92, 104, 151, 176, 185, 203, 212], n)
    return [f"{a}.{b}.{c}.{d}" for a, b, c, d in octets.tolist()]


def _ranges(sorted_codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(sorted_codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return starts.astype(np.int64), counts.astype(np.int64)


def build_population(seed: int, n_cards: int, n_merchants: int) -> Population:
    """Draw the population from ``SeedSequence([seed, 0, POPULATION_STREAM])``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, POPULATION_STREAM]))

    # --- merchants: every city gets a few shops (travel, cash-out), the rest
    # follow where cardholders live; ~15% are web shops.
    city_w = P.cardholder_city_weights()
    n_online = max(len(P.ONLINE_CATEGORY_WEIGHTS.nonzero()[0]) * 3, int(0.15 * n_merchants))
    n_cp = max(n_merchants - n_online, 4 * P.N_CITIES)
    cp_city = np.concatenate(
        [
            np.repeat(np.arange(P.N_CITIES), 3),
            rng.choice(P.N_CITIES, n_cp - 3 * P.N_CITIES, p=0.85 * city_w + 0.15 / P.N_CITIES),
        ]
    )
    cp_cat = rng.choice(len(P.CATEGORY_MEDIAN_AMOUNT), n_cp, p=P.CARD_PRESENT_CATEGORY_WEIGHTS)
    # the first shop of every city is its cash-out shop (electronics or jewelry)
    cp_cat[: P.N_CITIES * 3 : 3] = rng.choice(P.CASHOUT_CATEGORIES, P.N_CITIES)
    online_cats = np.flatnonzero(P.ONLINE_CATEGORY_WEIGHTS)
    on_cat = np.concatenate(
        [
            np.repeat(online_cats, 3),
            rng.choice(
                len(P.CATEGORY_MEDIAN_AMOUNT),
                n_online - 3 * len(online_cats),
                p=P.ONLINE_CATEGORY_WEIGHTS,
            ),
        ]
    )
    on_city = rng.choice(P.N_CITIES, n_online, p=0.7 * city_w + 0.3 / P.N_CITIES)
    n_m = n_cp + n_online
    mer_city = np.concatenate([cp_city, on_city])
    mer_cat = np.concatenate([cp_cat, on_cat]).astype(np.int8)
    mer_online = np.zeros(n_m, dtype=bool)
    mer_online[n_cp:] = True
    # shuffle so IDs and positions carry no meaning
    perm = rng.permutation(n_m)
    mer_city, mer_cat, mer_online = mer_city[perm], mer_cat[perm], mer_online[perm]
    inv = np.empty(n_m, dtype=np.int64)
    inv[perm] = np.arange(n_m)
    cashout_positions = inv[np.arange(0, 3 * P.N_CITIES, 3)]
    city_cashout = np.empty(P.N_CITIES, dtype=np.int64)
    city_cashout[mer_city[cashout_positions]] = cashout_positions
    mer_lat = P.CITY_LAT[mer_city] + rng.normal(0, 0.08, n_m)
    mer_lon = P.CITY_LON[mer_city] + rng.normal(0, 0.08, n_m)
    mer_ids = np.array([f"MER{x:07d}" for x in (1_000_000 + rng.permutation(n_m)).tolist()], dtype=object)
    cp_idx = np.flatnonzero(~mer_online)
    cp_sorted = cp_idx[np.argsort(mer_city[cp_idx], kind="stable")]
    city_cp_start, city_cp_count = _ranges(np.sort(mer_city[cp_idx]), P.N_CITIES)
    online_merchants = np.flatnonzero(mer_online)
    online_cum_w = np.cumsum(rng.pareto(1.5, len(online_merchants)) + 0.2)
    online_cum_w /= online_cum_w[-1]
    online_by_cat = {int(c): online_merchants[mer_cat[online_merchants] == c] for c in online_cats}

    # --- cardholders
    card_city = np.sort(rng.choice(P.N_CITIES, n_cards, p=city_w))
    city_card_start, city_card_count = _ranges(card_city, P.N_CITIES)
    card_lat = P.CITY_LAT[card_city] + rng.normal(0, 0.12, n_cards)
    card_lon = P.CITY_LON[card_city] + rng.normal(0, 0.12, n_cards)
    card_rate = rng.gamma(3.0, 1.0 / 3.0, n_cards)  # mean 1, scaled by the config later
    night_owl = rng.random(n_cards) < 0.06
    card_hour_center = np.where(night_owl, rng.normal(23.0, 1.0, n_cards), rng.normal(14.0, 1.8, n_cards))
    card_hour_sd = np.where(night_owl, 2.5, rng.uniform(3.5, 5.0, n_cards))
    card_spend = rng.lognormal(0.0, 0.35, n_cards)
    card_p_online = rng.beta(2.0, 5.0, n_cards)
    card_n_dev = rng.choice([1, 2, 3], n_cards, p=[0.45, 0.4, 0.15])
    card_dev_start = np.concatenate([[0], np.cumsum(card_n_dev)[:-1]])
    # favourites: local shops, popularity skewed towards low offsets in the city
    u = rng.random((n_cards, N_FAVOURITES)) ** 1.6
    off = (u * city_cp_count[card_city][:, None]).astype(np.int64)
    card_favs = cp_sorted[city_cp_start[card_city][:, None] + off]
    card_ids = np.array(
        [f"CARD{x:08d}" for x in (10_000_000 + rng.permutation(n_cards)).tolist()], dtype=object
    )

    # --- devices and IPs
    n_own = int(card_n_dev.sum())
    n_fresh = max(5_000, n_cards)
    n_drift = max(2_000, n_cards // 2)
    n_dev = n_own + N_FRAUDSTER_DEVICES + n_fresh + n_drift
    base_ua = np.arange(P.N_BASE_UA)
    dev_ua = np.concatenate(
        [
            rng.choice(base_ua, n_own, p=P.CARDHOLDER_UA_WEIGHTS),
            rng.choice(base_ua, N_FRAUDSTER_DEVICES, p=P.FRAUDSTER_UA_WEIGHTS),
            rng.choice(base_ua, n_fresh, p=P.CARDHOLDER_UA_WEIGHTS),
            rng.integers(P.N_BASE_UA, len(P.USER_AGENTS), n_drift),
        ]
    ).astype(np.int16)
    dev_str = np.array([*_hex_strings(rng, n_dev), None], dtype=object)
    # each own device has its own home IP near the cardholder's home
    dev_card = np.repeat(np.arange(n_cards), card_n_dev)
    city_ip_start = n_own
    n_ip = n_own + P.N_CITIES * IPS_PER_CITY
    ip_city = np.repeat(np.arange(P.N_CITIES), IPS_PER_CITY)
    ip_lat = np.concatenate(
        [
            card_lat[dev_card] + rng.normal(0, 0.03, n_own),
            P.CITY_LAT[ip_city] + rng.normal(0, 0.05, len(ip_city)),
        ]
    )
    ip_lon = np.concatenate(
        [
            card_lon[dev_card] + rng.normal(0, 0.03, n_own),
            P.CITY_LON[ip_city] + rng.normal(0, 0.05, len(ip_city)),
        ]
    )
    ip_country = np.concatenate([P.CITY_COUNTRY[card_city][dev_card], P.CITY_COUNTRY[ip_city]])
    dev_home_ip = np.full(n_dev, -1, dtype=np.int32)
    dev_home_ip[:n_own] = np.arange(n_own)
    # fresh devices bought by a cardholder go online from the cardholder's home IP;
    # their IP is chosen per event, so no fixed home IP here.
    ip_str = np.array([*_ip_strings(rng, n_ip), None], dtype=object)

    return Population(
        card_ids=card_ids,
        card_city=card_city,
        card_country=P.CITY_COUNTRY[card_city],
        card_lat=card_lat,
        card_lon=card_lon,
        card_rate=card_rate,
        card_hour_center=card_hour_center,
        card_hour_sd=card_hour_sd,
        card_spend=card_spend,
        card_p_online=card_p_online,
        card_dev_start=card_dev_start,
        card_n_dev=card_n_dev,
        card_favs=card_favs,
        city_card_start=city_card_start,
        city_card_count=city_card_count,
        mer_ids=mer_ids,
        mer_cat=mer_cat,
        mer_country=P.CITY_COUNTRY[mer_city],
        mer_lat=mer_lat,
        mer_lon=mer_lon,
        mer_online=mer_online,
        cp_sorted=cp_sorted,
        city_cp_start=city_cp_start,
        city_cp_count=city_cp_count,
        city_cashout=city_cashout,
        online_merchants=online_merchants,
        online_cum_w=online_cum_w,
        online_by_cat=online_by_cat,
        dev_str=dev_str,
        dev_ua=dev_ua,
        dev_home_ip=dev_home_ip,
        fraud_dev_start=n_own,
        fresh_dev_start=n_own + N_FRAUDSTER_DEVICES,
        n_fresh_dev=n_fresh,
        drift_dev_start=n_own + N_FRAUDSTER_DEVICES + n_fresh,
        ip_str=ip_str,
        ip_country=ip_country,
        ip_lat=ip_lat,
        ip_lon=ip_lon,
        city_ip_start=city_ip_start,
    )
