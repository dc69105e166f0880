"""Ordinary cardholder behaviour: daily spending, travel trips and drift.

Each day draws from its own stream ``SeedSequence([seed, day_ordinal, stream])``.
Trips span several days, so the trips covering a day are regenerated from the
streams of the days they started on; generating one day alone therefore sees
exactly the same trips as generating a whole range.
"""

from __future__ import annotations

import numpy as np

from . import events as E
from . import places as P
from .population import Population

LEGIT_STREAM = 1
TRAVEL_STREAM = 2
DRIFT_STREAM = 3
TRIP_START_PROB = 0.02  # per card per day
TRIP_MIN_DAYS, TRIP_MAX_DAYS = 2, 10
TRAVEL_RATE_UPLIFT = 1.3  # tourists spend more often
WEEKEND_RATE = 1.2
P_FAVOURITE = 0.85  # card-present purchase at one of the card's favourite shops
P_NEW_DEVICE = 0.012  # legit online purchase from a device the card never used
P_BIG_PURCHASE = 0.004  # occasional legit 5-10x ticket
DRIFT_ONLINE_CATS = (P.CAT["online_retail"], P.CAT["electronics"], P.CAT["digital_goods"])

MEAN_TRIP_DAYS = (TRIP_MIN_DAYS + TRIP_MAX_DAYS) / 2
TRAVEL_FRACTION = TRIP_START_PROB * MEAN_TRIP_DAYS  # share of card-days on a trip


def rng_for(seed: int, ordinal: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, ordinal, stream]))


def trips_started(pop: Population, seed: int, ordinal: int) -> tuple[np.ndarray, ...]:
    """(cards, duration_days, destination city, hour shift) of trips starting that day."""
    rng = rng_for(seed, ordinal, TRAVEL_STREAM)
    cards = np.flatnonzero(rng.random(pop.n_cards) < TRIP_START_PROB)
    dur = rng.integers(TRIP_MIN_DAYS, TRIP_MAX_DAYS + 1, len(cards))
    home = pop.card_country[cards]
    dest = P.random_foreign_city(rng, home, np.arange(P.N_CITIES), P.CITY_SIZE)
    domestic = rng.random(len(cards)) < 0.3
    dom_city = P.random_city_in_country(rng, home)
    # a domestic trip needs another city; one-city countries travel abroad instead
    use_dom = domestic & (dom_city != pop.card_city[cards])
    dest = np.where(use_dom, dom_city, dest)
    # timestamps stay in home local time: a trip east shows as earlier home hours
    shift = np.clip(np.round((P.CITY_LON[dest] - pop.card_lon[cards]) / 15.0), -12, 12)
    return cards, dur, dest, shift


def trips_on_day(pop: Population, seed: int, ordinal: int, cache) -> tuple[np.ndarray, np.ndarray]:
    """Per card: destination city (-1 at home) and hour shift on that day."""
    city = np.full(pop.n_cards, -1, dtype=np.int64)
    shift = np.zeros(pop.n_cards)
    for s in range(ordinal - TRIP_MAX_DAYS + 1, ordinal + 1):
        cards, dur, dest, sh = cache(s)
        on = s + dur > ordinal
        city[cards[on]] = dest[on]
        shift[cards[on]] = sh[on]
    return city, shift


def usual_hours(pop: Population, rng: np.random.Generator, card: np.ndarray, weekend: bool):
    """Hours (float, mod 24) drawn from each card's own daily rhythm."""
    h = pop.card_hour_center[card] + (1.0 if weekend else 0.0)
    return (h + rng.standard_normal(len(card)) * pop.card_hour_sd[card]) % 24.0


def usual_amounts(pop: Population, rng: np.random.Generator, card, merchant) -> np.ndarray:
    med = P.CATEGORY_MEDIAN_AMOUNT[pop.mer_cat[merchant]] * pop.card_spend[card]
    return med * rng.lognormal(0.0, 0.6, len(card))


def legit_day(
    pop: Population,
    seed: int,
    ordinal: int,
    rate_scale: float,
    trip_city: np.ndarray,
    trip_shift: np.ndarray,
    merchant_mix_shift: float = 0.0,
    device_mix_shift: float = 0.0,
) -> E.Events:
    """All ordinary transactions of one day (unsorted)."""
    rng = rng_for(seed, ordinal, LEGIT_STREAM)
    weekend = (ordinal - E.EPOCH_ORDINAL + 3) % 7 >= 5
    traveling = trip_city >= 0
    lam = pop.card_rate * rate_scale * (WEEKEND_RATE if weekend else 1.0)
    lam = np.where(traveling, lam * TRAVEL_RATE_UPLIFT, lam)
    card = np.repeat(np.arange(pop.n_cards), rng.poisson(lam))
    n = len(card)
    away = traveling[card]
    u = rng.random((8, n))

    hours = (usual_hours(pop, rng, card, weekend) - trip_shift[card]) % 24.0
    t = (ordinal - E.EPOCH_ORDINAL) * E.DAY + (hours * 3600).astype(np.int64)
    p_online = np.where(away, 0.5, 1.0) * pop.card_p_online[card]
    online = u[0] < p_online

    fav = pop.card_favs[card, (u[1] ** 1.5 * pop.card_favs.shape[1]).astype(np.int64)]
    here = np.where(away, trip_city[card], pop.card_city[card])
    cp = np.where(~away & (u[2] < P_FAVOURITE), fav, pop.random_cp_merchant(rng, here))
    web = pop.online_merchants[np.searchsorted(pop.online_cum_w, u[3])]
    merchant = np.where(online, web, cp)

    own = pop.card_dev_start[card] + (np.where(u[4] < 0.65, 0.0, u[5]) * pop.card_n_dev[card]).astype(
        np.int64
    )
    primary_ip = pop.dev_home_ip[pop.card_dev_start[card]]
    new_dev = u[6] < P_NEW_DEVICE
    device = np.where(new_dev, pop.fresh_dev_start + rng.integers(0, pop.n_fresh_dev, n), own)
    ip = np.where(new_dev, primary_ip, pop.dev_home_ip[device])
    ip = np.where(away, pop.random_city_ip(rng, np.maximum(here, 0)), ip)

    if merchant_mix_shift > 0 or device_mix_shift > 0:
        drng = rng_for(seed, ordinal, DRIFT_STREAM)
        dv = drng.random((2, n))
        moved = dv[0] < 0.5 * merchant_mix_shift
        online = online | moved
        merchant = np.where(moved, pop.random_online_merchant(drng, DRIFT_ONLINE_CATS, n), merchant)
        new_gen = online & (dv[1] < device_mix_shift)
        n_drift = len(pop.dev_ua) - pop.drift_dev_start
        device = np.where(new_gen, pop.drift_dev_start + drng.integers(0, n_drift, n), device)

    amount = usual_amounts(pop, rng, card, merchant)
    big = u[7] < P_BIG_PURCHASE
    amount = np.where(big, amount * rng.uniform(5.0, 10.0, n), amount)
    entry = np.where(online, P.ENTRY["ecommerce"], np.minimum(np.searchsorted(P.LEGIT_ENTRY_CUM, u[5]), 3))
    return E.make(
        t=t,
        card=card,
        merchant=merchant,
        online=online,
        device=np.where(online, device, -1),
        ip=np.where(online, ip, -1),
        ua=np.where(online, pop.dev_ua[device], -1),
        amount=amount,
        entry=entry,
        fraud=0,
        scenario=0,
        delay=0,
    )
