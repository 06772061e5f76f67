"""Claim check: behaviour change at the fractions quoted in public debate, and f*.

Per model and strategy: at f = 0.1% and f = 25% (or the nearest swept fractions, stated) the
median top-1 agreement with the unperturbed model, the change in mean NLL from the unperturbed
baseline, and the mean KL, each with its bootstrap CI across seeds; then f* for the primary
criterion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import formatting
from .critical import describe_f_star
from .load import Grid, Results

DEFAULT_CLAIM_FRACTIONS = (0.001, 0.25)
CLAIM_METRICS = ("top1_agreement", "mean_nll", "mean_kl")


@dataclass(frozen=True)
class ClaimPoint:
    """A quoted fraction and the swept amount used for it."""
    quoted: float
    fraction_idx: int
    swept: float

    @property
    def exact(self) -> bool:
        return math.isclose(self.quoted, self.swept, rel_tol=1e-9)

    def heading(self) -> str:
        if self.exact:
            return f"f = {formatting.percent(self.quoted)}"
        return f"f = {formatting.percent(self.swept)} (nearest swept to {formatting.percent(self.quoted)})"


def nearest_swept(grid: Grid, quoted: float) -> ClaimPoint | None:
    """The fraction entry of the grid closest to `quoted` in log f (None without fractions)."""
    fractions = grid.amounts.loc[~grid.amounts["is_count"], "fraction"]
    if fractions.empty:
        return None
    distance = np.abs(np.log10(fractions.to_numpy()) - math.log10(quoted))
    position = int(np.argmin(distance))
    return ClaimPoint(quoted, int(fractions.index[position]), float(fractions.iloc[position]))


CLAIM_COLUMNS = ["model", "strategy", "quoted_fraction", "swept_fraction", "n", "n_nonfinite",
                 "top1_agreement", "top1_agreement_lo", "top1_agreement_hi",
                 "delta_nll", "delta_nll_lo", "delta_nll_hi", "mean_kl", "mean_kl_lo", "mean_kl_hi"]


def claim_check(results: Results, curves: pd.DataFrame,
                claim_fractions=DEFAULT_CLAIM_FRACTIONS) -> tuple[pd.DataFrame, list[ClaimPoint]]:
    """Long table (CLAIM_COLUMNS): one row per (model, strategy, quoted fraction) with trials.

    Medians across seeds with bootstrap CIs; delta_nll is relative to the model's unperturbed
    baseline (NaN without /baseline). Non-finite outcomes count as +inf (see metrics.py).
    """
    points = [point for point in (nearest_swept(results.grid, f) for f in claim_fractions) if point]
    indexed = curves.set_index(["model", "strategy", "fraction_idx", "metric"])
    rows = []
    for model in results.grid.models["model"]:
        baseline_nll = (float(results.baseline.loc[model, "mean_nll"])
                        if results.baseline is not None else math.nan)
        for strategy in results.grid.strategies["strategy"]:
            for point in points:
                key = (model, strategy, point.fraction_idx)
                if (*key, "top1_agreement") not in indexed.index:
                    continue
                row = {"model": model, "strategy": strategy, "quoted_fraction": point.quoted,
                       "swept_fraction": point.swept}
                agreement = indexed.loc[(*key, "top1_agreement")]
                row.update(n=int(agreement["n"]), n_nonfinite=int(indexed.loc[(*key, "mean_nll"), "n_nonfinite"]))
                for metric, column, shift in (("top1_agreement", "top1_agreement", 0.0),
                                              ("mean_nll", "delta_nll", baseline_nll),
                                              ("mean_kl", "mean_kl", 0.0)):
                    summary = indexed.loc[(*key, metric)]
                    row[column] = summary["median"] - shift
                    row[f"{column}_lo"] = summary["median_lo"] - shift
                    row[f"{column}_hi"] = summary["median_hi"] - shift
                rows.append(row)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS), points


def claim_tables(claims: pd.DataFrame, points: list[ClaimPoint], critical: pd.DataFrame,
                 primary_criterion: str) -> dict[str, pd.DataFrame]:
    """Reader-facing tables of strings, one per model: a row per strategy."""
    primary = critical[critical["criterion"] == primary_criterion].set_index(["model", "strategy"])
    tables = {}
    for model, model_claims in claims.groupby("model", sort=False):
        rows = []
        for strategy, group in model_claims.groupby("strategy", sort=False):
            row = {"strategy": strategy}
            by_point = group.set_index("quoted_fraction")
            for point in points:
                label = formatting.percent(point.swept)
                if point.quoted not in by_point.index:
                    row[f"top-1 agreement @ {label}"] = row[f"ΔNLL (nats) @ {label}"] = "missing"
                    continue
                claim = by_point.loc[point.quoted]
                row[f"top-1 agreement @ {label}"] = formatting.estimate(
                    claim["top1_agreement"], claim["top1_agreement_lo"], claim["top1_agreement_hi"])
                row[f"ΔNLL (nats) @ {label}"] = _signed_estimate(
                    claim["delta_nll"], claim["delta_nll_lo"], claim["delta_nll_hi"])
            if (model, strategy) in primary.index:
                row["f*"] = describe_f_star(primary.loc[(model, strategy)])
            rows.append(row)
        tables[model] = pd.DataFrame(rows)
    return tables


def _signed_estimate(centre: float, low: float, high: float) -> str:
    text = formatting.signed(centre)
    if math.isnan(low) or math.isnan(high) or (math.isinf(centre) and centre == low == high):
        return text
    return f"{text} [{formatting.signed(low)}, {formatting.signed(high)}]"
