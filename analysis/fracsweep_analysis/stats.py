"""Centre and spread across seeds at every swept fraction, with confidence intervals.

For each (model, strategy, amount, metric):
  * median and mean across seeds, each with a percentile bootstrap CI over seeds;
  * quartiles, min, max, standard deviation;
  * for rates (top-1 agreement, accuracy): the rate pooled over every evaluated token of every
    seed, with a Wilson score interval (successes = round(rate * positions)).

Non-finite outcomes count as the metric's worst value (metrics.MetricInfo.worst), so a trial
that destroyed the model pulls the median towards "destroyed" instead of disappearing; the
count of such trials is reported in `n_nonfinite`. Missing trials (partial files) are absent,
and counted in `n_missing`.

Bootstrap draws come from a generator seeded by (settings.seed, the cell's labels), so every
number is reproducible and independent of the order cells are processed in.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .load import Results
from .metrics import DEFAULT_METRICS, metric_info
from .progress import Progress

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_SEED = 20261126


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = DEFAULT_BOOTSTRAP_SEED

    def __post_init__(self):
        if self.resamples < 100:
            raise ValueError(f"bootstrap resamples must be >= 100, got {self.resamples}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")

    def generator(self, *labels: object) -> np.random.Generator:
        """A generator for one cell, keyed by the settings' seed and the cell's labels."""
        cell_key = zlib.crc32("|".join(str(label) for label in labels).encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence([self.seed, cell_key]))


def percentile_interval(replicates: np.ndarray, confidence: float, axis: int = -1) -> tuple:
    """Percentile interval of bootstrap replicates; infinite replicates are allowed.

    The lower end takes the order statistic at or below alpha/2 and the upper end the one at or
    above 1 - alpha/2 (never interpolating, which would turn inf - inf into NaN); with the
    default 2000 resamples this widens the interval by at most one order statistic.
    """
    alpha = 1.0 - confidence
    low = np.quantile(replicates, alpha / 2.0, axis=axis, method="lower")
    high = np.quantile(replicates, 1.0 - alpha / 2.0, axis=axis, method="higher")
    return low, high


def bootstrap_interval(values: np.ndarray, statistic: str, settings: BootstrapSettings,
                       generator: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI of the median or mean of `values` (NaN, NaN when n < 2)."""
    return bootstrap_intervals(np.asarray(values, dtype=np.float64)[:, None], statistic, settings,
                               generator)[0]


def bootstrap_intervals(columns: np.ndarray, statistic: str, settings: BootstrapSettings,
                        generator: np.random.Generator) -> list[tuple[float, float]]:
    """CIs for several columns of one cell (n_seeds, n_columns) resampled with shared draws."""
    n = columns.shape[0]
    if n < 2:
        return [(math.nan, math.nan)] * columns.shape[1]
    resample = generator.integers(0, n, size=(settings.resamples, n))  # (B, n) seed indices
    samples = columns[resample]  # (B, n, n_columns)
    if statistic == "median":
        replicates = np.median(samples, axis=1)  # (B, n_columns)
    elif statistic == "mean":
        with np.errstate(invalid="ignore", over="ignore"):  # huge finite losses average to inf
            replicates = np.mean(samples, axis=1)
    else:
        raise ValueError(f"unknown statistic {statistic!r}")
    low, high = percentile_interval(replicates, settings.confidence, axis=0)
    return list(zip(low.tolist(), high.tolist()))


def wilson_interval(successes: float, trials: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (NaN, NaN when trials == 0)."""
    if trials <= 0:
        return math.nan, math.nan
    z = scipy_stats.norm.ppf(0.5 + confidence / 2.0)
    rate = successes / trials
    z2_over_n = z * z / trials
    centre = (rate + z2_over_n / 2.0) / (1.0 + z2_over_n)
    half_width = z * math.sqrt(rate * (1.0 - rate) / trials + z2_over_n / (4.0 * trials)) / (1.0 + z2_over_n)
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


CURVE_COLUMNS = ["model", "strategy", "metric", "fraction_idx", "amount", "fraction", "n",
                 "n_missing", "n_nonfinite", "median", "median_lo", "median_hi", "mean", "mean_lo",
                 "mean_hi", "q25", "q75", "min", "max", "std", "pooled_successes",
                 "pooled_positions", "pooled_rate", "wilson_lo", "wilson_hi"]


def summarise_curves(results: Results, metrics=DEFAULT_METRICS,
                     settings: BootstrapSettings = BootstrapSettings(),
                     progress: Progress | None = None) -> pd.DataFrame:
    """One row per (model, strategy, metric, amount) with at least one trial (CURVE_COLUMNS).

    `fraction` is the fraction actually perturbed (k / n_scope; equal to the requested fraction
    up to rounding of k), so count entries sit at their true place on the fraction axis.
    """
    progress = progress or Progress(enabled=False)
    infos = [metric_info(name) for name in metrics]
    missing = results.missing.trials.groupby(
        ["model_idx", "strategy_idx", "fraction_idx"]).size().to_dict()
    cells = results.trials.groupby(["model_idx", "strategy_idx", "fraction_idx"], sort=True)
    progress.start("summarising curves", cells.ngroups)
    rows = []
    for (model_idx, strategy_idx, amount_idx), cell in cells:
        model, strategy = cell["model"].iloc[0], cell["strategy"].iloc[0]
        raw = cell[[info.name for info in infos]].to_numpy(dtype=np.float64)  # (n_seeds, n_metrics)
        outcome = np.column_stack([info.as_outcome(raw[:, j]) for j, info in enumerate(infos)])
        generator = settings.generator(model, strategy, amount_idx)
        median_ci = bootstrap_intervals(outcome, "median", settings, generator)
        mean_ci = bootstrap_intervals(outcome, "mean", settings, generator)
        positions = cell["positions"].to_numpy(dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # huge finite losses: mean, std -> inf
            spreads = np.std(outcome, axis=0, ddof=1) if len(outcome) > 1 else np.full(len(infos), np.nan)
            means = np.mean(outcome, axis=0)
        for j, info in enumerate(infos):
            values = outcome[:, j]
            row = {
                "model": model, "strategy": strategy, "metric": info.name,
                "fraction_idx": int(amount_idx), "amount": cell["amount"].iloc[0],
                "fraction": float(np.median(cell["fraction"])), "n": len(values),
                "n_missing": int(missing.get((model_idx, strategy_idx, amount_idx), 0)),
                "n_nonfinite": int(np.count_nonzero(np.isnan(raw[:, j]))),
                "median": float(np.median(values)),
                "median_lo": median_ci[j][0], "median_hi": median_ci[j][1],
                "mean": float(means[j]), "mean_lo": mean_ci[j][0], "mean_hi": mean_ci[j][1],
                "q25": float(np.quantile(values, 0.25, method="lower")),
                "q75": float(np.quantile(values, 0.75, method="higher")),
                "min": float(values.min()), "max": float(values.max()),
                "std": float(spreads[j]) if np.isfinite(values).all() else math.nan,
            }
            row.update(_pooled_rate(values, positions, settings.confidence) if info.is_rate else {})
            rows.append(row)
        progress.advance()
    progress.finish()
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _pooled_rate(rates: np.ndarray, positions: np.ndarray, confidence: float) -> dict:
    """Rate pooled over every token of every seed, with its Wilson interval."""
    usable = positions > 0
    successes = float(np.round(rates[usable] * positions[usable]).sum())
    total = float(positions[usable].sum())
    low, high = wilson_interval(successes, total, confidence)
    return {"pooled_successes": successes, "pooled_positions": total,
            "pooled_rate": successes / total if total else math.nan,
            "wilson_lo": low, "wilson_hi": high}
