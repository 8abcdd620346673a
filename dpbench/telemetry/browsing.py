"""system_web_cat_usage and system_web_cat_pivot_duration: browsing by category and browser.

A browsing device uses a set of browsers (chrome, edge, firefox; co-usage prior
solved to the published shares of devices, with chrome and edge swapped in the
countries where edge leads) and browses with its persona's published category
mix, tilted per device. Each browsing day has a few (browser, category) rows;
the pivot table is then computed from the usage rows exactly as the reporting
pipeline does: durations summed by (guid, dt) and category.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dpbench.telemetry import world
from dpbench.telemetry.population import COUNTRIES, PERSONAS, Population
from dpbench.telemetry.reporting_days import draw_day_counts, expand_days
from dpbench.telemetry.schema import TABLES, WEB_CATEGORIES

USAGE_TABLE = "system_web_cat_usage"
PIVOT_TABLE = "system_web_cat_pivot_duration"
BROWSERS = ("chrome", "edge", "firefox")
CATEGORIES = tuple(WEB_CATEGORIES)


def persona_mixes() -> np.ndarray:
    """Category mix (rows sum to one) per persona; personas without a published mix get the mean mix."""
    published = world.TARGETS["persona_browsing"]
    mixes = np.array([[published[p][c] if published[p][c] is not None else np.nan for c in CATEGORIES]
                      for p in PERSONAS.values], dtype=float)
    known = ~np.isnan(mixes).any(axis=1)
    mixes[~known] = mixes[known].mean(axis=0)
    mixes = np.maximum(mixes, 0.0)
    return mixes / mixes.sum(axis=1, keepdims=True)


def persona_days() -> np.ndarray:
    """Mean browsing days per device for each persona (published days / devices)."""
    published = world.TARGETS["persona_browsing"]
    return np.array([published[p]["days"] / published[p]["number_of_systems"] for p in PERSONAS.values])


def edge_first_countries() -> np.ndarray:
    """Country codes whose published top browser is edge."""
    top = world.TARGETS["top_browser_by_country"]
    return np.array([top[c] == "edge" for c in COUNTRIES.values])


def browser_weights(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """(n, 3) row weights over BROWSERS: 1 for the primary browser, a small weight for secondary ones."""
    sets = list(world.BROWSER_SETS)
    p = np.array(list(world.BROWSER_SETS.values()))
    chosen = rng.choice(len(sets), size=len(country), p=p / p.sum())
    member = np.array([[b in s for b in BROWSERS] for s in sets])[chosen]
    swap = edge_first_countries()[country]
    member[swap] = member[swap][:, [1, 0, 2]]
    preference = [BROWSERS.index(b) for b in world.BROWSER_PREFERENCE]
    preference_edge_first = [BROWSERS.index({"chrome": "edge", "edge": "chrome"}.get(b, b))
                             for b in world.BROWSER_PREFERENCE]
    rank = np.empty((len(country), 3))
    rank[:, preference] = np.arange(3)
    rank[np.ix_(swap, preference_edge_first)] = np.arange(3)
    rank = np.where(member, rank, np.inf)
    primary = np.argmin(rank, axis=1)
    weights = member * world.SECONDARY_BROWSER_WEIGHT
    weights[np.arange(len(country)), primary] = 1.0
    return weights


def _inverse_cdf(rng: np.random.Generator, weights: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """For each row, a column of ``weights[owner[row]]`` drawn with probability proportional to it."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(owner))
    return np.minimum((u[:, None] > cdf[owner]).sum(axis=1), weights.shape[1] - 1)


def browsing_rows(rng: np.random.Generator, pop: Population, devices: np.ndarray) -> dict[str, pa.Table]:
    """Usage and pivot rows for the given devices (indices into the population)."""
    n = len(devices)
    persona = pop.persona[devices]
    mix = persona_mixes()[persona] * rng.gamma(world.CATEGORY_DEVICE_SHAPE, 1 / world.CATEGORY_DEVICE_SHAPE, (n, 28))
    browsers = browser_weights(rng, pop.country[devices])
    days = expand_days(rng, draw_day_counts(rng, persona_days()[persona], n))
    per_day = 1 + rng.poisson(world.USAGE_ROWS_PER_DAY_EXTRA, len(days))
    day = np.repeat(np.arange(len(days)), per_day)
    owner = days.device[day]
    browser = _inverse_cdf(rng, browsers, owner)
    category = _inverse_cdf(rng, mix, owner)
    duration = np.rint(rng.lognormal(np.log(world.USAGE_DURATION_MEDIAN_MS), world.USAGE_DURATION_SIGMA, len(day)))

    key = (day * len(BROWSERS) + browser) * len(CATEGORIES) + category
    unique_key, row = np.unique(key, return_inverse=True)
    duration_ms = np.bincount(row, weights=duration).astype(np.int64)
    u_day = unique_key // (len(BROWSERS) * len(CATEGORIES))
    u_browser = (unique_key // len(CATEGORIES)) % len(BROWSERS)
    u_category = unique_key % len(CATEGORIES)
    minutes = duration_ms / 60_000
    page_visits = 1 + rng.poisson(minutes * 0.8)
    page_loads = page_visits + rng.poisson(minutes * 0.3)
    domains = 1 + rng.binomial(page_visits - 1, 0.3)
    sites = domains + rng.binomial(np.maximum(page_visits - domains, 0), 0.2)
    parents = [WEB_CATEGORIES[c][0] for c in CATEGORIES]
    subs = [WEB_CATEGORIES[c][1] for c in CATEGORIES]
    usage = pa.table({
        "guid": pop.guid.take(pa.array(devices[days.device[u_day]])),
        "dt": pa.array(days.dt[u_day]),
        "browser": pa.DictionaryArray.from_arrays(u_browser.astype(np.int32), list(BROWSERS)).cast(pa.string()),
        "parent_category": pa.DictionaryArray.from_arrays(u_category.astype(np.int32), parents).cast(pa.string()),
        "sub_category": pa.DictionaryArray.from_arrays(u_category.astype(np.int32), subs).cast(pa.string()),
        "duration_ms": pa.array(duration_ms),
        "page_load_count": pa.array(page_loads.astype(np.int64)),
        "site_count": pa.array(sites.astype(np.int64)),
        "domain_count": pa.array(domains.astype(np.int64)),
        "page_visit_count": pa.array(page_visits.astype(np.int64)),
    }, schema=TABLES[USAGE_TABLE].arrow_schema())

    pivot_values = np.bincount(u_day * len(CATEGORIES) + u_category, weights=duration_ms,
                               minlength=len(days) * len(CATEGORIES)).reshape(len(days), len(CATEGORIES))
    pivot = pa.table({
        "guid": pop.guid.take(pa.array(devices[days.device])),
        "dt": pa.array(days.dt),
        **{c: pa.array(pivot_values[:, i]) for i, c in enumerate(CATEGORIES)},
    }, schema=TABLES[PIVOT_TABLE].arrow_schema())
    return {USAGE_TABLE: usage, PIVOT_TABLE: pivot}
