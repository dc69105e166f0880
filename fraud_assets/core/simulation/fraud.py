"""Fraud episodes: compromised cards used by fraudsters over minutes to days.

An episode is drawn entirely from the stream of the day it starts on
(``SeedSequence([seed, start_ordinal, EPISODE_STREAM + scenario])``) and may
emit events on later days; the simulator regenerates recent episodes and keeps
only the events of the requested day. Signals such as velocity, new devices,
foreign IPs and risky merchants are consequences of what the fraudster does,
never labels pasted onto ordinary rows.

The mix (``SCENARIOS``, shares of fraud *rows*) is set by two constraints at once:

* Learnability. The product promises precision >= 0.8 at 90% recall on the
  default data. ``lost_stolen`` is by design near invisible (a thief buying
  ordinary things at ordinary local shops), so every fraud row it owns is recall
  no model can reach: it is kept at 5%, enough that "some fraud looks entirely
  ordinary" stays true and measurable, small enough that catching ~95% of the
  rest reaches 90% recall. (At 18% it capped precision at 90% recall near 0.15.)
* The seed guide's aggregates: ~70% of fraud at night, ~60% foreign, amounts
  ~5x legit, velocity ~10x. With ``lost_stolen`` this small, its ordinary-looking
  rows cannot bring those shares down from the 80-90% nocturnal, mostly foreign
  fraud the visible scenarios would give on their own, so the visible scenarios
  themselves vary: a quarter of card testers and a fifth of account takeovers come through proxies in the victim's
  own country, and a third of takeovers happen in the evening. Those rows stay
  detectable through history (a fraudster device new to the card, bursts of
  probes, new merchants, amounts far above the card's own average, merchant
  risk), not through hour or country alone.

The remaining shares follow how much each visible scenario is observed in
practice and keep each one frequent enough to be learned from a few weeks of
labels: card testing 36% (many cheap probes per card), account takeover 32%,
compromised merchant (counterfeit cash-out) 27%.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import events as E
from . import places as P
from .legit import usual_amounts, usual_hours
from .population import N_FRAUDSTER_DEVICES, Population

EPISODE_STREAM = 100
LOOKBACK_DAYS = 15  # longest episode: breach visit (<=2 d) + dormancy (<=11 d) + cash-out


def _in_group(counts: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``gaps`` restarting at every group (all counts >= 1)."""
    cs = np.cumsum(gaps)
    first = np.cumsum(counts) - counts
    return cs - np.repeat(cs[first] - gaps[first], counts)


def _night_or_day(
    rng: np.random.Generator, n: int, p_night: float, day: tuple[float, float] = (7.0, 22.0)
) -> np.ndarray:
    """Start hours: 23:00-02:30 with probability p_night (sprees run on), else within ``day``."""
    night = rng.random(n) < p_night
    return np.where(night, (23.0 + 3.5 * rng.random(n)) % 24.0, day[0] + (day[1] - day[0]) * rng.random(n))


def chargeback_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds until a fraud is reported: some in 1-3 days, most ~10 days, cap 60."""
    days = np.where(rng.random(n) < 0.25, rng.uniform(1.0, 3.0, n), rng.lognormal(np.log(10.0), 0.45, n))
    return (np.minimum(days, 60.0) * E.DAY).astype(np.int64)


def _fraud(scenario: str, rng: np.random.Generator, **cols) -> E.Events:
    n = len(cols["t"])
    cols["amount"] = np.maximum(np.round(cols["amount"], 2), 0.5)
    return E.make(fraud=1, scenario=P.SCN[scenario], delay=chargeback_delay(rng, n), **cols)


# Night and geography of the visible scenarios (see the module docstring for why).
CT_P_NIGHT = 0.75  # card-testing bots run while the cardholder sleeps, though not only then
CT_P_DOMESTIC_PROXY = 0.25  # probes through residential proxies in the card's country
ATO_P_NIGHT = 0.65  # takeovers at night, otherwise in the evening (after work, phishing replies)
ATO_EVENING = (17.0, 23.0)
ATO_P_FOREIGN = 0.8  # the rest come from a proxy in the card's country, still a new device


def card_testing(pop: Population, rng: np.random.Generator, day0: int, n: int) -> E.Events:
    """Small digital-goods probes within minutes, then a few large buys, one fraudster device.

    The IP is in a high-risk country, or (``CT_P_DOMESTIC_PROXY``) a proxy in the
    card's own country: such a spree is still a burst of tiny probes from a
    device the card never used.
    """
    card = rng.integers(0, pop.n_cards, n)
    start = day0 + (_night_or_day(rng, n, CT_P_NIGHT) * 3600).astype(np.int64)
    dev = pop.fraud_dev_start + rng.integers(0, N_FRAUDSTER_DEVICES, n)
    city = P.HIGH_RISK_CITIES[rng.integers(0, len(P.HIGH_RISK_CITIES), n)]
    proxy = rng.random(n) < CT_P_DOMESTIC_PROXY
    city = np.where(proxy, P.random_city_in_country(rng, pop.card_country[card]), city)
    ip = pop.random_city_ip(rng, city)
    n_small, n_large = rng.integers(4, 13, n), rng.integers(1, 4, n)
    ks, kl = np.repeat(np.arange(n), n_small), np.repeat(np.arange(n), n_large)
    ts = start[ks] + _in_group(n_small, rng.exponential(50.0, len(ks)) + 8).astype(np.int64)
    last = ts[np.cumsum(n_small) - 1]
    tl = last[kl] + _in_group(n_large, rng.exponential(900.0, len(kl)) + 120).astype(np.int64)
    k = np.concatenate([ks, kl])
    return _fraud(
        "card_testing",
        rng,
        t=np.concatenate([ts, tl]),
        card=card[k],
        merchant=np.concatenate(
            [
                pop.random_online_merchant(rng, (P.CAT["digital_goods"],), len(ks)),
                pop.random_online_merchant(rng, (P.CAT["electronics"], P.CAT["online_retail"]), len(kl)),
            ]
        ),
        online=True,
        device=dev[k],
        ip=ip[k],
        ua=pop.dev_ua[dev[k]],
        amount=np.concatenate([rng.uniform(0.5, 5.0, len(ks)), rng.lognormal(np.log(900.0), 0.5, len(kl))]),
        entry=P.ENTRY["ecommerce"],
    )


def account_takeover(pop: Population, rng: np.random.Generator, day0: int, n: int) -> E.Events:
    """Online spree from a new device, foreign IP and another user agent, within hours.

    At night (``ATO_P_NIGHT``) or else in the evening; from abroad (``ATO_P_FOREIGN``)
    or through a proxy at home. Evening and domestic takeovers remain new-device,
    new-merchant, high-ticket sprees, so history features still catch them.
    """
    card = rng.integers(0, pop.n_cards, n)
    start = day0 + (_night_or_day(rng, n, ATO_P_NIGHT, ATO_EVENING) * 3600).astype(np.int64)
    dev = pop.fraud_dev_start + rng.integers(0, N_FRAUDSTER_DEVICES, n)
    ua = pop.dev_ua[dev]
    own_ua = pop.dev_ua[pop.card_dev_start[card]]
    ua = np.where(ua == own_ua, (ua + 1) % P.N_BASE_UA, ua)
    home = pop.card_country[card]
    risky = P.random_foreign_city(rng, home, P.HIGH_RISK_CITIES)
    anywhere = P.random_foreign_city(rng, home, np.arange(P.N_CITIES))
    city = np.where(rng.random(n) < 0.6, risky, anywhere)
    city = np.where(rng.random(n) < ATO_P_FOREIGN, city, P.random_city_in_country(rng, home))
    ip = pop.random_city_ip(rng, city)
    cnt = rng.integers(2, 7, n)
    k = np.repeat(np.arange(n), cnt)
    t = start[k] + _in_group(cnt, rng.exponential(600.0, len(k)) + 60).astype(np.int64)
    return _fraud(
        "account_takeover",
        rng,
        t=t,
        card=card[k],
        merchant=pop.random_online_merchant(
            rng, (P.CAT["online_retail"], P.CAT["electronics"], P.CAT["travel"]), len(k)
        ),
        online=True,
        device=dev[k],
        ip=ip[k],
        ua=ua[k],
        amount=rng.lognormal(np.log(600.0), 0.6, len(k)),
        entry=P.ENTRY["ecommerce"],
    )


CM_VISITORS = (3, 8)  # cards skimmed per breach, inclusive
CM_P_BAD = 0.7  # share of skimmed cards the fraudsters later use
CM_CASH = (2, 6)  # counterfeit purchases per bad card, inclusive
CM_P_NIGHT = 0.75  # cash-out runs start at night, else during shop hours


def compromised_merchant(pop: Population, rng: np.random.Generator, day0: int, n: int):
    """A local shop is breached: its customers' cards are cloned and cashed out days later.

    The skimmed visits are emitted as ordinary (legit) purchases at the breached
    shop, so the link "visited merchant X, then went bad" exists in the data.
    """
    anchor = rng.integers(0, pop.n_cards, n)
    shop = pop.card_favs[anchor, rng.integers(0, 3, n)]
    visitors = rng.integers(CM_VISITORS[0], CM_VISITORS[1] + 1, n)
    kv = np.repeat(np.arange(n), visitors)
    vcard = pop.random_city_card(rng, pop.card_city[anchor][kv])
    vday = day0 + rng.integers(0, 2, len(kv)) * E.DAY
    vt = vday + (usual_hours(pop, rng, vcard, False) * 3600).astype(np.int64)
    visit = E.make(
        t=vt,
        card=vcard,
        merchant=shop[kv],
        online=False,
        device=-1,
        ip=-1,
        ua=-1,
        amount=np.maximum(np.round(usual_amounts(pop, rng, vcard, shop[kv]), 2), 0.5),
        entry=rng.choice([P.ENTRY["chip"], P.ENTRY["contactless"]], len(kv)),
        fraud=0,
        scenario=0,
        delay=0,  # set with the other legit rows
    )
    bad = np.flatnonzero(rng.random(len(kv)) < CM_P_BAD)
    bcard, nb = vcard[bad], len(bad)
    home = pop.card_country[bcard]
    abroad = rng.random(nb) < 0.35
    city = np.where(
        abroad,
        P.random_foreign_city(rng, home, P.CASHOUT_CITIES),
        P.random_city_in_country(rng, home),
    )
    shop_out = np.where(rng.random(nb) < 0.6, pop.city_cashout[city], pop.random_cp_merchant(rng, city))
    go = vday[bad] + rng.integers(2, 12, nb) * E.DAY
    go = go + (_night_or_day(rng, nb, CM_P_NIGHT) * 3600).astype(np.int64)
    cnt = rng.integers(CM_CASH[0], CM_CASH[1] + 1, nb)
    k = np.repeat(np.arange(nb), cnt)
    t = go[k] + _in_group(cnt, rng.exponential(600.0, len(k)) + 120).astype(np.int64)
    # cash-out hops between the hub shop and its neighbours
    hop = rng.random(len(k)) < 0.4
    merchant = np.where(hop, pop.random_cp_merchant(rng, city[k]), shop_out[k])
    entry = np.array([P.ENTRY["swipe"]] * 7 + [P.ENTRY["manual"], P.ENTRY["chip"], P.ENTRY["chip"]])
    fraud = _fraud(
        "compromised_merchant",
        rng,
        t=t,
        card=bcard[k],
        merchant=merchant,
        online=False,
        device=-1,
        ip=-1,
        ua=-1,
        amount=rng.lognormal(np.log(500.0), 0.6, len(k)),
        entry=entry[rng.integers(0, len(entry), len(k))],
    )
    return E.concat([visit, fraud])


def lost_stolen(pop: Population, rng: np.random.Generator, day0: int, n: int) -> E.Events:
    """A thief taps a found card at ordinary local shops, at ordinary hours: near invisible."""
    card = rng.integers(0, pop.n_cards, n)
    cnt = rng.integers(2, 5, n)
    k = np.repeat(np.arange(n), cnt)
    c = card[k]
    t = day0 + rng.integers(0, 2, len(k)) * E.DAY
    t = t + (usual_hours(pop, rng, c, False) * 3600).astype(np.int64)
    merchant = pop.random_cp_merchant(rng, pop.card_city[c])
    return _fraud(
        "lost_stolen",
        rng,
        t=t,
        card=c,
        merchant=merchant,
        online=False,
        device=-1,
        ip=-1,
        ua=-1,
        amount=usual_amounts(pop, rng, c, merchant) * 1.3,
        entry=rng.choice([P.ENTRY["contactless"], P.ENTRY["chip"]], len(k), p=[0.6, 0.4]),
    )


def new_pattern(pop: Population, rng: np.random.Generator, day0: int, n: int) -> E.Events:
    """Drift-only: domestic daytime mid-amount online entertainment fraud (a clean category).

    Residential proxies in the card's own country and a fresh device with a
    mainstream browser: none of the other scenarios' cues fire.
    """
    card = rng.integers(0, pop.n_cards, n)
    cnt = rng.integers(1, 4, n)
    k = np.repeat(np.arange(n), cnt)
    c = card[k]
    dev = pop.fresh_dev_start + rng.integers(0, pop.n_fresh_dev, n)
    city = P.random_city_in_country(rng, pop.card_country[card])
    ip = pop.random_city_ip(rng, city)
    t = day0 + (rng.uniform(10.0, 17.0, len(k)) * 3600).astype(np.int64)
    return _fraud(
        "new_pattern",
        rng,
        t=t,
        card=c,
        merchant=pop.random_online_merchant(rng, (P.CAT["entertainment"],), len(k)),
        online=True,
        device=dev[k],
        ip=ip[k],
        ua=pop.dev_ua[dev[k]],
        amount=rng.uniform(80.0, 250.0, len(k)),
        entry=P.ENTRY["ecommerce"],
    )


# scenario -> (generator, mean fraud transactions per episode, share of fraud rows).
# Shares: see the module docstring. lost_stolen is capped at 5% because it is the
# fraud no model can see; the product's precision at 90% recall depends on it.
Scenario = tuple[Callable[..., E.Events], float, float]
SCENARIOS: dict[str, Scenario] = {
    "card_testing": (card_testing, 8.0 + 2.0, 0.36),
    "compromised_merchant": (compromised_merchant, 5.5 * CM_P_BAD * 4.0, 0.27),
    "account_takeover": (account_takeover, 4.0, 0.32),
    "lost_stolen": (lost_stolen, 3.0, 0.05),
}
NEW_PATTERN: Scenario = (new_pattern, 2.0, 0.25)  # takes its share from the others


def episodes_started(
    pop: Population, seed: int, ordinal: int, fraud_per_day: float, with_new_pattern: bool
) -> E.Events:
    """All events of the fraud episodes that start on ``ordinal`` (any later day included)."""
    day0 = (ordinal - E.EPOCH_ORDINAL) * E.DAY
    scen = dict(SCENARIOS)
    scale = 1.0
    if with_new_pattern:
        scale = 1.0 - NEW_PATTERN[2]
        scen["new_pattern"] = NEW_PATTERN
    parts = []
    for name, (fn, per_episode, share) in scen.items():
        share = share if name == "new_pattern" else share * scale
        stream = EPISODE_STREAM + P.SCN[name]
        rng = np.random.default_rng(np.random.SeedSequence([seed, ordinal, stream]))
        n = int(rng.poisson(fraud_per_day * share / per_episode))
        if n:
            parts.append(fn(pop, rng, day0, n))
    return E.concat(parts)
