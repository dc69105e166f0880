"""Cities, country mixes and category vocabularies of the simulated world.

Everything is a small constant table so that the population and the events can
index into numpy arrays instead of looking strings up per transaction.
"""

from __future__ import annotations

import numpy as np

from fraud_assets.core.columns import COUNTRIES, ENTRY_MODES, FRAUD_SCENARIOS, MERCHANT_CATEGORIES

# (name, ISO-3 country, lat, lon, relative size). Every country of COUNTRIES has
# at least one city so travel, IP geolocation and cash-out can land anywhere.
CITIES: tuple[tuple[str, str, float, float, float], ...] = (
    ("New York", "USA", 40.71, -74.01, 8.0),
    ("Los Angeles", "USA", 34.05, -118.24, 6.0),
    ("Chicago", "USA", 41.88, -87.63, 4.0),
    ("Houston", "USA", 29.76, -95.37, 3.5),
    ("Phoenix", "USA", 33.45, -112.07, 2.5),
    ("Philadelphia", "USA", 39.95, -75.17, 2.5),
    ("San Antonio", "USA", 29.42, -98.49, 2.0),
    ("San Diego", "USA", 32.72, -117.16, 2.0),
    ("Dallas", "USA", 32.78, -96.80, 2.5),
    ("Miami", "USA", 25.76, -80.19, 2.5),
    ("Seattle", "USA", 47.61, -122.33, 2.0),
    ("Boston", "USA", 42.36, -71.06, 2.0),
    ("Atlanta", "USA", 33.75, -84.39, 2.0),
    ("Denver", "USA", 39.74, -104.99, 1.5),
    ("Toronto", "CAN", 43.65, -79.38, 3.0),
    ("Montreal", "CAN", 45.50, -73.57, 2.0),
    ("Vancouver", "CAN", 49.28, -123.12, 1.5),
    ("Mexico City", "MEX", 19.43, -99.13, 3.0),
    ("Guadalajara", "MEX", 20.66, -103.35, 1.0),
    ("Sao Paulo", "BRA", -23.55, -46.63, 3.0),
    ("Rio de Janeiro", "BRA", -22.91, -43.17, 2.0),
    ("Buenos Aires", "ARG", -34.60, -58.38, 1.0),
    ("London", "GBR", 51.51, -0.13, 4.0),
    ("Manchester", "GBR", 53.48, -2.24, 1.5),
    ("Dublin", "IRL", 53.35, -6.26, 1.0),
    ("Paris", "FRA", 48.86, 2.35, 3.0),
    ("Lyon", "FRA", 45.76, 4.84, 1.0),
    ("Berlin", "DEU", 52.52, 13.40, 2.0),
    ("Munich", "DEU", 48.14, 11.58, 1.5),
    ("Hamburg", "DEU", 53.55, 9.99, 1.0),
    ("Amsterdam", "NLD", 52.37, 4.90, 1.0),
    ("Madrid", "ESP", 40.42, -3.70, 2.0),
    ("Barcelona", "ESP", 41.39, 2.17, 1.5),
    ("Rome", "ITA", 41.90, 12.50, 1.5),
    ("Milan", "ITA", 45.46, 9.19, 1.5),
    ("Warsaw", "POL", 52.23, 21.01, 1.0),
    ("Bucharest", "ROU", 44.43, 26.10, 1.0),
    ("Kyiv", "UKR", 50.45, 30.52, 1.0),
    ("Moscow", "RUS", 55.76, 37.62, 1.0),
    ("Istanbul", "TUR", 41.01, 28.98, 1.0),
    ("Lagos", "NGA", 6.52, 3.38, 1.0),
    ("Johannesburg", "ZAF", -26.20, 28.05, 1.0),
    ("Cairo", "EGY", 30.04, 31.24, 1.0),
    ("Dubai", "ARE", 25.20, 55.27, 1.0),
    ("Mumbai", "IND", 19.08, 72.88, 1.0),
    ("Delhi", "IND", 28.61, 77.21, 1.0),
    ("Shanghai", "CHN", 31.23, 121.47, 1.0),
    ("Beijing", "CHN", 39.90, 116.40, 1.0),
    ("Tokyo", "JPN", 35.68, 139.69, 1.0),
    ("Seoul", "KOR", 37.57, 126.98, 1.0),
    ("Singapore", "SGP", 1.35, 103.82, 1.0),
    ("Jakarta", "IDN", -6.21, 106.85, 1.0),
    ("Ho Chi Minh City", "VNM", 10.82, 106.63, 1.0),
    ("Manila", "PHL", 14.60, 120.98, 1.0),
    ("Sydney", "AUS", -33.87, 151.21, 1.5),
    ("Melbourne", "AUS", -37.81, 144.96, 1.0),
)
N_CITIES = len(CITIES)
CITY_COUNTRY = np.array([COUNTRIES.index(c[1]) for c in CITIES], dtype=np.int16)
CITY_LAT = np.array([c[2] for c in CITIES])
CITY_LON = np.array([c[3] for c in CITIES])
CITY_SIZE = np.array([c[4] for c in CITIES])

# Where cardholders live: mostly USA, the rest spread over a few markets.
CARDHOLDER_COUNTRY_SHARE: dict[str, float] = {
    "USA": 0.70, "CAN": 0.06, "GBR": 0.06, "DEU": 0.04, "FRA": 0.04, "MEX": 0.02,
    "ESP": 0.02, "ITA": 0.02, "AUS": 0.02, "NLD": 0.01, "IRL": 0.01,
}  # fmt: skip


def cardholder_city_weights() -> np.ndarray:
    """Probability of each city being a cardholder's home (country share x city size)."""
    w = np.zeros(N_CITIES)
    for country, share in CARDHOLDER_COUNTRY_SHARE.items():
        mask = COUNTRIES.index(country) == CITY_COUNTRY
        w[mask] = share * CITY_SIZE[mask] / CITY_SIZE[mask].sum()
    return w / w.sum()


# Fraudster infrastructure (card testing, account takeover) sits here.
HIGH_RISK_COUNTRIES: tuple[str, ...] = (
    "NGA", "RUS", "UKR", "ROU", "VNM", "IDN", "PHL", "BRA", "CHN", "TUR",
)  # fmt: skip
HIGH_RISK_CITIES = np.flatnonzero(np.isin(CITY_COUNTRY, [COUNTRIES.index(c) for c in HIGH_RISK_COUNTRIES]))
# Counterfeit cards are cashed out in these hubs (domestic or abroad).
CASHOUT_CITIES = np.array(
    [i for i, c in enumerate(CITIES) if c[0] in {
        "Miami", "Los Angeles", "New York", "Houston", "Toronto", "London", "Mexico City",
        "Bucharest", "Istanbul", "Lagos", "Sao Paulo", "Moscow", "Dubai", "Kyiv",
    }]
)  # fmt: skip

# Category codes index MERCHANT_CATEGORIES.
CAT = {name: i for i, name in enumerate(MERCHANT_CATEGORIES)}
SCN = {name: i for i, name in enumerate(FRAUD_SCENARIOS)}
ENTRY = {name: i for i, name in enumerate(ENTRY_MODES)}

# Typical (median) legit ticket per category, in the card's currency.
CATEGORY_MEDIAN_AMOUNT = np.array([45, 32, 40, 22, 65, 85, 40, 220, 50, 12, 160, 250], dtype="float64")
# Category mix of shops on the street and of web shops.
CARD_PRESENT_CATEGORY_WEIGHTS = np.array(
    [0.25, 0.22, 0.13, 0.08, 0.08, 0.06, 0.06, 0.03, 0.0, 0.0, 0.06, 0.03]
)
ONLINE_CATEGORY_WEIGHTS = np.array([0.0, 0.0, 0.0, 0.0, 0.08, 0.0, 0.10, 0.10, 0.40, 0.20, 0.12, 0.0])
# Card-present entry modes of ordinary purchases: chip, contactless, swipe, manual.
LEGIT_ENTRY_CUM = np.cumsum([0.55, 0.33, 0.09, 0.03])

# Browsers and apps. The last NEW_UA_COUNT appear only with the device-mix drift knob.
USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Chrome/123.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    "BankApp/5.2 (iOS 17.4; iPhone15,2)",
    "BankApp/5.2 (Android 14; SM-S918B)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Edg/124.0",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 19_0 like Mac OS X) AppleWebKit/619.1 Mobile/22A100",
    "Mozilla/5.0 (Linux; Android 16; Pixel 10) AppleWebKit/537.36 Chrome/140.0 Mobile Safari/537.36",
    "BankApp/7.0 (visionOS 3.0; RealityDevice2,1)",
)
NEW_UA_COUNT = 3
N_BASE_UA = len(USER_AGENTS) - NEW_UA_COUNT
# Cardholders' devices vs fraudsters' devices: same vocabulary, different mix.
CARDHOLDER_UA_WEIGHTS = np.array([0.22, 0.18, 0.14, 0.10, 0.04, 0.08, 0.05, 0.01, 0.08, 0.06, 0.03, 0.01])
FRAUDSTER_UA_WEIGHTS = np.array([0.08, 0.10, 0.22, 0.06, 0.12, 0.07, 0.02, 0.10, 0.02, 0.03, 0.08, 0.10])

# "Cash-out" shops favour goods that resell easily.
CASHOUT_CATEGORIES = (CAT["electronics"], CAT["jewelry"])

# Cities grouped by country, so "a random city of country c" is a range lookup.
_CITY_BY_COUNTRY = np.argsort(CITY_COUNTRY, kind="stable")
_COUNTRY_CITY_COUNT = np.bincount(CITY_COUNTRY, minlength=len(COUNTRIES))
_COUNTRY_CITY_START = np.concatenate([[0], np.cumsum(_COUNTRY_CITY_COUNT)[:-1]])


def random_city_in_country(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """A uniformly random city of each given country code."""
    off = (rng.random(len(country)) * _COUNTRY_CITY_COUNT[country]).astype(np.int64)
    return _CITY_BY_COUNTRY[_COUNTRY_CITY_START[country] + off]


def random_foreign_city(
    rng: np.random.Generator, home_country: np.ndarray, pool: np.ndarray, weights=None
) -> np.ndarray:
    """A city from ``pool`` outside each home country (redraws the few that collide)."""
    p = None if weights is None else weights / weights.sum()
    city = pool[rng.choice(len(pool), len(home_country), p=p)]
    bad = CITY_COUNTRY[city] == home_country
    while bad.any():
        city[bad] = pool[rng.choice(len(pool), int(bad.sum()), p=p)]
        bad = CITY_COUNTRY[city] == home_country
    return city
