"""Behaviour probes: rate and target log-prob against fraction, and behaviour vs capability.

Files of jobs with `[eval] probes` carry, per probe kind K, the trial columns probe_K_rate (the
fraction of K's prompts whose greedy continuation begins with the target) and probe_K_logprob
(the mean log p(target | prompt)), with the unperturbed values in /baseline and the kinds in
/grid/probe_kind. Labels and units are the file's own (its /trials column table).

* Probe curves: per (model, strategy, kind, amount) the mean over seeds with a percentile
  bootstrap CI of the mean over seeds (stats.summarise_curves), and the median; the model's
  unperturbed value alongside.
* Behaviour vs capability: per (model, strategy, kind) the smallest fraction where the behaviour
  rate falls below BEHAVIOUR_FACTOR x its baseline and the smallest where mean NLL rises above
  CAPABILITY_CRITERION's 1.5 x its baseline. Both are critical fractions of critical.py (first
  crossing of the median-across-seeds curve, interpolated in log f, bootstrap CI over seeds, the
  swept fractions bracketing it), so the two columns are measured the same way; `which_first`
  says which breaks first.
Files without probe columns have no probe kinds, and every function here returns empty tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import formatting
from .critical import (BELOW_RANGE, BRACKETED, INTERPOLATED, Criterion, critical_fraction,
                       describe_f_star)
from .load import Results
from .metrics import MetricInfo, probe_column, probe_metric_info
from .progress import Progress
from .stats import BootstrapSettings, summarise_curves

BEHAVIOUR_FACTOR = 0.5  # behaviour lost: rate below this factor x the model's baseline rate
CAPABILITY_CRITERION = Criterion("mean_nll", "above", 1.5, "factor")

# Verdicts of which_first.
BEHAVIOUR_FIRST = "behaviour first"
CAPABILITY_FIRST = "capability first"
TOGETHER = "together"
NEITHER = "neither"
NO_BEHAVIOUR = "no behaviour at baseline"
NO_CHANGE = "no change"
REACHED = (INTERPOLATED, BRACKETED, BELOW_RANGE)


@dataclass(frozen=True)
class ProbeKind:
    """One probe kind of a file, its two columns described by the file's attributes."""
    kind: str
    rate: MetricInfo
    logprob: MetricInfo

    @property
    def metrics(self) -> tuple[str, str]:
        return self.rate.name, self.logprob.name


def probe_kinds(results: Results) -> list[ProbeKind]:
    """The file's probe kinds (/grid/probe_kind order; for files without that axis, the order of
    the probe columns) whose two columns are in /trials. Empty for files without probes."""
    names = list(results.columns.index)
    kinds = list(results.grid.probe_kinds)
    for name in names:
        parsed = probe_column(name)
        if parsed and parsed[0] not in kinds:
            kinds.append(parsed[0])
    found = []
    for kind in kinds:
        rate, logprob = f"probe_{kind}_rate", f"probe_{kind}_logprob"
        if rate in names and logprob in names and rate in results.trials and logprob in results.trials:
            found.append(ProbeKind(kind, _column_info(results, rate), _column_info(results, logprob)))
    return found


def _column_info(results: Results, name: str) -> MetricInfo:
    column = results.columns.loc[name]
    return probe_metric_info(name, str(column["units"]), str(column["long_name"]) or None)


def baseline_value(results: Results, model: str, metric: str) -> float:
    """The unperturbed model's value of `metric` (/baseline), NaN when the file has none."""
    baseline = results.baseline
    if baseline is None or model not in baseline.index or metric not in baseline.columns:
        return math.nan
    return float(baseline.loc[model, metric])


# --- probe curves ---------------------------------------------------------------------------

PROBE_CURVE_COLUMNS = ["model", "strategy", "kind", "quantity", "metric", "units", "fraction_idx",
                       "amount", "fraction", "n", "n_missing", "n_nonfinite", "mean", "mean_lo",
                       "mean_hi", "median", "median_lo", "median_hi", "min", "max", "baseline"]


def probe_curves(results: Results, kinds: list[ProbeKind],
                 settings: BootstrapSettings = BootstrapSettings(),
                 progress: Progress | None = None) -> pd.DataFrame:
    """One row per (model, strategy, kind, quantity, amount) with trials (PROBE_CURVE_COLUMNS).

    Centre: the mean over seeds, with a percentile bootstrap CI of the mean over seeds (and the
    median with its CI). A NaN log-prob (non-finite logits at a target row) counts as -inf."""
    if not kinds:
        return pd.DataFrame(columns=PROBE_CURVE_COLUMNS)
    metrics = [name for kind in kinds for name in kind.metrics]
    curves = summarise_curves(results, metrics, settings, progress)
    of_metric = {name: (kind, quantity) for kind in kinds
                 for name, quantity in zip(kind.metrics, ("rate", "logprob"))}
    curves["kind"] = [of_metric[name][0].kind for name in curves["metric"]]
    curves["quantity"] = [of_metric[name][1] for name in curves["metric"]]
    curves["units"] = [results.columns.loc[name, "units"] for name in curves["metric"]]
    curves["baseline"] = [baseline_value(results, model, metric)
                          for model, metric in zip(curves["model"], curves["metric"])]
    return curves[PROBE_CURVE_COLUMNS]


def probe_curve_tables(curves: pd.DataFrame, quantity: str = "rate") -> dict[str, pd.DataFrame]:
    """Reader-facing tables, one per model: a row per (strategy, kind), the baseline, then the
    mean over seeds [CI] at every swept amount."""
    tables = {}
    data = curves[curves["quantity"] == quantity]
    for model, model_curves in data.groupby("model", sort=False):
        amounts = (model_curves[["fraction_idx", "amount", "fraction"]].drop_duplicates("fraction_idx")
                   .sort_values("fraction"))
        rows = []
        for (strategy, kind), cell in model_curves.groupby(["strategy", "kind"], sort=False):
            by_amount = cell.set_index("fraction_idx")
            row = {"strategy": strategy, "kind": kind,
                   "baseline": formatting.number(cell["baseline"].iloc[0], 2)}
            for amount in amounts.itertuples():
                if amount.fraction_idx not in by_amount.index:
                    row[amount.amount] = "missing"
                    continue
                point = by_amount.loc[amount.fraction_idx]
                row[amount.amount] = formatting.estimate(point["mean"], point["mean_lo"], point["mean_hi"], 2)
            rows.append(row)
        tables[model] = pd.DataFrame(rows)
    return tables


# --- behaviour vs capability --------------------------------------------------------------------

CROSSING_FIELDS = ("threshold", "status", "f_star", "f_star_lo", "f_star_hi", "n_seeds",
                   "seeds_crossed", "swept_min", "swept_max", "bracket_lo", "bracket_hi")
VERSUS_COLUMNS = (["model", "strategy", "kind", "baseline_rate", "no_change"]
                  + [f"behaviour_{name}" for name in CROSSING_FIELDS]
                  + [f"capability_{name}" for name in CROSSING_FIELDS]
                  + ["capability_baseline", "first", "first_reason"])


def behaviour_criterion(kind: ProbeKind, factor: float = BEHAVIOUR_FACTOR) -> Criterion:
    """The behaviour rate falls below `factor` x the model's baseline rate."""
    return Criterion(kind.rate.name, "below", factor, "factor")


def behaviour_vs_capability(results: Results, kinds: list[ProbeKind],
                            settings: BootstrapSettings = BootstrapSettings(),
                            critical: pd.DataFrame | None = None,
                            progress: Progress | None = None) -> pd.DataFrame:
    """One row per (model, strategy, kind) with trials (VERSUS_COLUMNS).

    The capability crossing is taken from `critical` (critical_fractions' table) when it holds
    CAPABILITY_CRITERION for the cell, else computed the same way. Rows of a model whose
    baseline rate for the kind is 0 (or absent) have nothing to lose: first = NO_BEHAVIOUR.
    Cells where no trial changed a stored value (a delta toward the model itself; k_changed = 0)
    have first = NO_CHANGE."""
    if not kinds:
        return pd.DataFrame(columns=VERSUS_COLUMNS)
    progress = progress or Progress(enabled=False)
    known = {}
    if critical is not None and len(critical):
        for _, row in critical[critical["criterion"] == CAPABILITY_CRITERION.spec].iterrows():
            known[(row["model"], row["strategy"])] = row.to_dict()
    cells = results.trials.groupby(["model_idx", "strategy_idx"], sort=True)
    progress.start("behaviour vs capability", cells.ngroups * len(kinds))
    rows = []
    for _, cell in cells:
        model, strategy = cell["model"].iloc[0], cell["strategy"].iloc[0]
        capability = known.get((model, strategy))
        if capability is None:
            threshold = CAPABILITY_CRITERION.threshold(results.baseline, model)
            capability = {"threshold": threshold, **critical_fraction(
                cell, CAPABILITY_CRITERION, threshold, settings, (model, strategy))}
        no_change = "k_changed" in cell and bool((cell["k_changed"] == 0).all())
        for kind in kinds:
            criterion = behaviour_criterion(kind)
            baseline_rate = baseline_value(results, model, kind.rate.name)
            threshold = criterion.threshold(results.baseline, model)
            row = {"model": model, "strategy": strategy, "kind": kind.kind,
                   "baseline_rate": baseline_rate, "no_change": no_change,
                   "capability_baseline": baseline_value(results, model, CAPABILITY_CRITERION.metric)}
            row.update({f"capability_{name}": capability.get(name, math.nan) for name in CROSSING_FIELDS})
            behaviour = {"threshold": threshold}
            if not baseline_rate > 0:
                row["first"], row["first_reason"] = NO_BEHAVIOUR, (
                    "baseline rate is 0: nothing to lose" if baseline_rate == 0
                    else "no baseline rate in the file")
            elif no_change:
                row["first"], row["first_reason"] = NO_CHANGE, "k_changed = 0 in every trial"
            else:
                behaviour.update(critical_fraction(cell, criterion, threshold, settings, (model, strategy)))
                row["first"], row["first_reason"] = which_first(behaviour, capability)
            row.update({f"behaviour_{name}": behaviour.get(name, math.nan) for name in CROSSING_FIELDS})
            rows.append(row)
            progress.advance()
    progress.finish()
    return pd.DataFrame(rows, columns=VERSUS_COLUMNS)


def _interval(crossing: dict) -> tuple[float, float]:
    """A crossing's CI, or its point when it has none (one trial per fraction); not reached is
    +inf and 'at or below the smallest swept fraction' is 0 (critical.py's coding)."""
    low, high = crossing["f_star_lo"], crossing["f_star_hi"]
    if math.isnan(low) or math.isnan(high):
        return crossing["f_star"], crossing["f_star"]
    return low, high


def which_first(behaviour: dict, capability: dict) -> tuple[str, str]:
    """(verdict, reason) for two crossings of one (model, strategy) (critical_fraction rows).

    NEITHER when neither is reached in the swept range; TOGETHER when both are first past their
    thresholds at the same swept fraction (the grid cannot order them) or when their CIs overlap;
    otherwise the one whose CI lies wholly below the other's comes first."""
    reached = [crossing["status"] in REACHED for crossing in (behaviour, capability)]
    if not any(reached):
        return NEITHER, "neither threshold is crossed within the swept range"
    if all(reached) and behaviour["bracket_hi"] == capability["bracket_hi"]:
        swept = formatting.percent(behaviour["bracket_hi"])
        return TOGETHER, f"both first past their thresholds at swept {swept}"
    (b_low, b_high), (c_low, c_high) = _interval(behaviour), _interval(capability)
    if b_high < c_low:
        return BEHAVIOUR_FIRST, "behaviour interval lies below the capability interval"
    if c_high < b_low:
        return CAPABILITY_FIRST, "capability interval lies below the behaviour interval"
    return TOGETHER, "the intervals overlap"


def crossing_text(row, prefix: str) -> str:
    """describe_f_star of one side of a versus row, with the swept fractions bracketing it."""
    crossing = {name: row[f"{prefix}{name}"] for name in CROSSING_FIELDS}
    if math.isnan(crossing["threshold"]):
        return "no baseline for the threshold"
    text = describe_f_star(crossing)
    low, high = crossing["bracket_lo"], crossing["bracket_hi"]
    if crossing["status"] in (INTERPOLATED, BRACKETED) and np.isfinite([low, high]).all():
        text += f"; between swept {formatting.percent(low)} and {formatting.percent(high)}"
    return text


def versus_table(versus: pd.DataFrame) -> pd.DataFrame:
    """Reader-facing rows of the behaviour-vs-capability table: cells where the model has the
    behaviour and the strategy changes something."""
    shown = versus[~versus["first"].isin((NO_BEHAVIOUR, NO_CHANGE))]
    behaviour_header = f"behaviour: rate < {BEHAVIOUR_FACTOR:.0%} of baseline at f [CI]"
    capability_header = f"capability: mean NLL > {CAPABILITY_CRITERION.value:g} × baseline at f [CI]"
    columns = ["model", "strategy", "kind", "baseline rate", behaviour_header, capability_header, "first"]
    rows = []
    for _, row in shown.iterrows():
        rows.append({
            "model": row["model"], "strategy": row["strategy"], "kind": row["kind"],
            "baseline rate": formatting.number(row["baseline_rate"], 3),
            behaviour_header: crossing_text(row, "behaviour_"),
            capability_header: crossing_text(row, "capability_"),
            "first": row["first"] if row["first"] == NEITHER else f"{row['first']} ({row['first_reason']})",
        })
    return pd.DataFrame(rows, columns=columns)
