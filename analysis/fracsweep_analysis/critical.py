"""Critical fraction f*: the smallest fraction at which a metric crosses a threshold.

For each (model, strategy, criterion):
  * point estimate: the first crossing of the median-across-seeds curve, linearly interpolated
    in log10 f between the last swept fraction not crossed and the first crossed; when the first
    crossed point is non-finite (destroyed outputs) there is nothing to interpolate and the
    estimate is the geometric midpoint of that bracket;
  * CI: percentile bootstrap over seeds (resample seeds, recompute the median curve and its
    crossing);
  * logistic fit: maximum likelihood of P(trial crossed) = 1 / (1 + exp(-b (log10 f - log10 f50)))
    over every trial, with a Wald interval; reported only when it converges, i.e. when seeds
    overlap (some cross before others) — otherwise the reason is given.
Censoring is reported, never extrapolated: "not reached within the swept range" when the curve
never crosses, "at or below the smallest swept fraction" when it is already crossed there.

Adaptive files ([sweep] adaptive) hold one search per (model, strategy, seed, criterion) that
brackets f* between two adjacent lattice fractions; their f* is the median over seeds of each
bracket's geometric midpoint (log space; censored seeds count as 0 or +inf), with a percentile
bootstrap CI over seeds. The criteria are the file's own: those the searches were run for.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as scipy_stats

from .formatting import percent
from .load import Results
from .metrics import metric_info, probe_column
from .progress import Progress
from .stats import BootstrapSettings, percentile_interval

BASELINE_METRICS = ("mean_nll", "perplexity", "accuracy")

# Crossing outcomes of one curve.
INTERPOLATED = "interpolated"
BRACKETED = "bracket midpoint (non-finite point)"
BELOW_RANGE = "at or below the smallest swept fraction"
NOT_REACHED = "not reached within the swept range"
NO_DATA = "no data"
ADAPTIVE = "median over seeds of adaptive-search brackets"


@dataclass(frozen=True)
class Criterion:
    """`metric` below/above a threshold: absolute, a factor of the baseline, or baseline -/+ points."""
    metric: str
    direction: str      # "below" | "above"
    value: float
    relative: str = ""  # "" (absolute) | "factor" (value x baseline) | "points" (baseline + value/100)

    def __post_init__(self):
        metric_info(self.metric)
        if self.direction not in ("below", "above"):
            raise ValueError(f"criterion direction must be 'below' or 'above', got {self.direction!r}")
        if self.relative and self.metric not in BASELINE_METRICS and not probe_column(self.metric):
            raise ValueError(f"criterion on {self.metric} cannot be relative to the baseline: the "
                             f"results file has baselines for {', '.join(BASELINE_METRICS)} and "
                             f"the probe columns only")
        if self.relative == "points" and not metric_info(self.metric).is_rate:
            raise ValueError(f"'pt' (percentage points) applies to rates, not {self.metric}")

    @property
    def spec(self) -> str:
        sign = "<" if self.direction == "below" else ">"
        if self.relative == "factor":
            return f"{self.metric}{sign}x{self.value:g}"
        if self.relative == "points":
            return f"{self.metric}{sign}{self.value:+g}pt"
        return f"{self.metric}{sign}{self.value:g}"

    def describe(self) -> str:
        sign = "<" if self.direction == "below" else ">"
        name = metric_info(self.metric).label
        if self.relative == "factor":
            return f"{name} {sign} {self.value:g} × baseline"
        if self.relative == "points":
            return f"{name} {sign} baseline {'+' if self.value >= 0 else '−'} {abs(self.value):g} points"
        unit = metric_info(self.metric).unit
        unit_text = f" {unit}" if unit in ("nats/token", "nats", "tokens") else ""
        return f"{name} {sign} {self.value:g}{unit_text}"

    def threshold(self, baseline: pd.DataFrame | None, model: str) -> float:
        """The absolute threshold for `model` (NaN when it needs a baseline that is absent)."""
        if not self.relative:
            return self.value
        if baseline is None or model not in baseline.index or self.metric not in baseline.columns:
            return math.nan
        reference = float(baseline.loc[model, self.metric])
        return reference * self.value if self.relative == "factor" else reference + self.value / 100.0

    def crossed(self, outcome: np.ndarray, threshold: float) -> np.ndarray:
        """True where the (NaN-free) outcome is past the threshold; NaN (missing) is False."""
        with np.errstate(invalid="ignore"):
            return outcome < threshold if self.direction == "below" else outcome > threshold


CRITERION_PATTERN = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_]+)\s*(?P<sign>[<>])\s*(?:(?P<factor>x)\s*(?P<fvalue>[0-9.eE+-]+)|"
    r"(?P<points>[+-][0-9.eE+-]+)\s*pt|(?P<absolute>[0-9.eE+-]+))\s*$")


def parse_criterion(text: str) -> Criterion:
    """'top1_agreement<0.5', 'mean_kl>0.5', 'mean_nll>x1.5' (1.5 x baseline),
    'accuracy<-10pt' (baseline minus 10 percentage points)."""
    match = CRITERION_PATTERN.match(text)
    if not match:
        raise ValueError(f"criterion {text!r}: expected METRIC<VALUE, METRIC>VALUE, "
                         f"METRIC>xFACTOR or METRIC<-POINTSpt (e.g. 'accuracy<-10pt')")
    direction = "below" if match["sign"] == "<" else "above"
    try:
        if match["factor"]:
            return Criterion(match["metric"], direction, float(match["fvalue"]), "factor")
        if match["points"]:
            return Criterion(match["metric"], direction, float(match["points"]), "points")
        return Criterion(match["metric"], direction, float(match["absolute"]))
    except ValueError as error:
        raise ValueError(f"criterion {text!r}: {error}") from None


DEFAULT_CRITERIA = (Criterion("top1_agreement", "below", 0.5),
                    Criterion("mean_kl", "above", 0.5),
                    Criterion("mean_nll", "above", 1.5, "factor"),
                    Criterion("accuracy", "below", -10.0, "points"))


# --- crossing of curves ---------------------------------------------------------------------

def first_crossings(log_fractions: np.ndarray, curves: np.ndarray, criterion: Criterion,
                    threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """First crossing of each curve (rows of `curves` (n_curves, F) over ascending log10 f (F)).

    NaN marks a point with no data (skipped); +/-inf are real, non-finite outcomes. Returns
    (log10 f* (n_curves): +inf when not reached, -inf when at/below the first point, NaN when a
    curve has no data; status (n_curves) of str).
    """
    n_curves, n_points = curves.shape
    valid = ~np.isnan(curves)  # (n_curves, F)
    crossed = valid & criterion.crossed(curves, threshold)
    reached = crossed.any(axis=1)
    first = np.argmax(crossed, axis=1)  # (n_curves) first crossed point (0 when none)
    valid_index = np.where(valid, np.arange(n_points), -1)
    last_valid_upto = np.maximum.accumulate(valid_index, axis=1)  # (n_curves, F)
    rows = np.arange(n_curves)
    previous = np.where(first > 0, last_valid_upto[rows, np.maximum(first - 1, 0)], -1)

    log_star = np.full(n_curves, np.nan)
    status = np.full(n_curves, NO_DATA, dtype=object)
    has_data = valid.any(axis=1)
    not_reached = has_data & ~reached
    log_star[not_reached], status[not_reached] = math.inf, NOT_REACHED
    below = reached & (previous < 0)
    log_star[below], status[below] = -math.inf, BELOW_RANGE
    bracket = reached & (previous >= 0)
    lo_x, hi_x = log_fractions[previous[bracket].clip(0)], log_fractions[first[bracket]]
    lo_y, hi_y = curves[rows[bracket], previous[bracket]], curves[rows[bracket], first[bracket]]
    finite = np.isfinite(lo_y) & np.isfinite(hi_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(finite, (threshold - lo_y) / (hi_y - lo_y), 0.5)
    log_star[bracket] = lo_x + weight * (hi_x - lo_x)
    status[bracket] = np.where(finite, INTERPOLATED, BRACKETED)
    return log_star, status


# --- logistic fit -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LogisticFit:
    status: str                  # "converged" or the reason there is no estimate
    log_f50: float = math.nan    # log10 of the fraction where P(crossed) = 1/2
    log_f50_lo: float = math.nan
    log_f50_hi: float = math.nan
    slope: float = math.nan      # per decade of f

    @property
    def converged(self) -> bool:
        return self.status == "converged"


def fit_logistic(log_fractions: np.ndarray, crossed: np.ndarray, confidence: float) -> LogisticFit:
    """ML logistic regression of crossed (bool, per trial) on log10 f, slope > 0."""
    x = np.asarray(log_fractions, dtype=np.float64)
    y = np.asarray(crossed, dtype=bool)
    if y.all() or not y.any():
        return LogisticFit("not fitted: every trial is on the same side of the threshold")
    last_below, first_past = x[~y].max(), x[y].min()
    if last_below < first_past:
        return LogisticFit(
            f"not fitted: every seed crosses between {percent(10 ** last_below)} and "
            f"{percent(10 ** first_past)} (complete separation: the likelihood has no maximum)")
    if last_below == first_past:
        return LogisticFit(
            f"not fitted: seeds differ only at {percent(10 ** first_past)} (quasi-complete "
            f"separation: the likelihood has no maximum); a finer fraction grid would allow a fit")
    x_centre, x_scale = float(x.mean()), float(max(x.std(), 1e-6))

    def negative_log_likelihood(params: np.ndarray) -> float:
        location, log_slope = params
        eta = math.exp(log_slope) * (x - location)
        return float(-np.sum(np.where(y, special.log_expit(eta), special.log_expit(-eta))))

    start = np.array([x_centre, math.log(2.0 / x_scale)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = optimize.minimize(negative_log_likelihood, start, method="Nelder-Mead",
                                   options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    location, slope = float(result.x[0]), math.exp(float(result.x[1]))
    if not result.success or not math.isfinite(location) or slope > 1e4:
        return LogisticFit(f"not converged ({result.message})")
    if not x.min() <= location <= x.max():
        return LogisticFit("not converged: fitted midpoint lies outside the swept range")
    probability = special.expit(slope * (x - location))
    weight = probability * (1.0 - probability)
    distance = x - location
    information = np.array([[np.sum(weight) * slope ** 2, -slope * np.sum(weight * distance)],
                            [-slope * np.sum(weight * distance), np.sum(weight * distance ** 2)]])
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return LogisticFit("not converged: singular information matrix")
    if not covariance[0, 0] > 0:
        return LogisticFit("not converged: no positive variance for the midpoint")
    half_width = scipy_stats.norm.ppf(0.5 + confidence / 2.0) * math.sqrt(covariance[0, 0])
    return LogisticFit("converged", location, location - half_width, location + half_width, slope)


# --- f* per (model, strategy, criterion) --------------------------------------------------------

CRITICAL_COLUMNS = ["model", "strategy", "criterion", "description", "threshold", "status",
                    "f_star", "f_star_lo", "f_star_hi", "n_seeds", "seeds_crossed",
                    "seed_f_star_min", "seed_f_star_max", "swept_min", "swept_max",
                    "bracket_lo", "bracket_hi",
                    "logistic_status", "logistic_f50", "logistic_lo", "logistic_hi"]


@dataclass
class SeedMatrix:
    """One (model, strategy) cell of the sweep as seeds x fractions of one metric."""
    log_fractions: np.ndarray  # (F) log10 effective fraction, ascending
    outcome: np.ndarray        # (R, F) metric with non-finite -> worst, NaN where missing


def seed_matrix(trials: pd.DataFrame, metric: str) -> SeedMatrix:
    info = metric_info(metric)
    table = trials.pivot(index="seed_idx", columns="fraction_idx", values=[metric, "trial"])
    fractions = trials.groupby("fraction_idx")["fraction"].median().reindex(table[metric].columns)
    order = np.argsort(fractions.to_numpy(), kind="stable")
    outcome = info.as_outcome(table[metric].to_numpy(dtype=np.float64))  # (R, F) NaN -> worst
    outcome[table["trial"].isna().to_numpy()] = np.nan  # cells with no trial: missing, not worst
    with np.errstate(divide="ignore"):
        log_fractions = np.log10(fractions.to_numpy()[order])
    return SeedMatrix(log_fractions, outcome[:, order])


def crossing_bracket(log_fractions: np.ndarray, curve: np.ndarray, criterion: Criterion,
                     threshold: float) -> tuple[float, float]:
    """The swept fractions around the first crossing of one curve (F) over ascending log10 f:
    (last fraction with data not past the threshold before it, first fraction past it).
    NaN for an end that does not exist: (NaN, smallest swept) when the curve is past the
    threshold at its first point, (largest swept not past, NaN) when it never crosses."""
    valid = ~np.isnan(curve)
    crossed = valid & criterion.crossed(curve, threshold)
    if not valid.any():
        return math.nan, math.nan
    if not crossed.any():
        return float(10 ** log_fractions[np.flatnonzero(valid)[-1]]), math.nan
    first = int(np.argmax(crossed))
    before = np.flatnonzero(valid[:first])
    low = float(10 ** log_fractions[before[-1]]) if before.size else math.nan
    return low, float(10 ** log_fractions[first])


def _median_curves(outcome: np.ndarray, axis: int) -> np.ndarray:
    if not np.isnan(outcome).any():
        return np.median(outcome, axis=axis)  # complete cells: the much faster path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmedian(outcome, axis=axis)


def critical_fraction(trials: pd.DataFrame, criterion: Criterion, threshold: float,
                      settings: BootstrapSettings, labels: tuple) -> dict:
    """f* of one (model, strategy) for one criterion; `trials` are that cell's rows."""
    matrix = seed_matrix(trials, criterion.metric)
    x = matrix.log_fractions
    row = {"n_seeds": matrix.outcome.shape[0],
           "swept_min": 10 ** x.min(), "swept_max": 10 ** x.max()}
    if math.isnan(threshold):
        return {**row, "status": "no baseline for a relative threshold", "f_star": math.nan,
                "bracket_lo": math.nan, "bracket_hi": math.nan,
                "f_star_lo": math.nan, "f_star_hi": math.nan, "seeds_crossed": 0,
                "seed_f_star_min": math.nan, "seed_f_star_max": math.nan,
                "logistic_status": "not fitted", "logistic_f50": math.nan,
                "logistic_lo": math.nan, "logistic_hi": math.nan}
    centre_curve = _median_curves(matrix.outcome, axis=0)[None, :]  # (1, F)
    log_star, status = first_crossings(x, centre_curve, criterion, threshold)
    row.update(zip(("bracket_lo", "bracket_hi"), crossing_bracket(x, centre_curve[0], criterion, threshold)))
    per_seed, _ = first_crossings(x, matrix.outcome, criterion, threshold)
    crossed_seeds = per_seed[per_seed < math.inf]  # -inf: at or below the smallest fraction
    row.update(status=status[0], f_star=10 ** log_star[0], seeds_crossed=int(crossed_seeds.size),
               seed_f_star_min=10 ** crossed_seeds.min() if crossed_seeds.size else math.nan,
               seed_f_star_max=10 ** crossed_seeds.max() if crossed_seeds.size else math.nan)
    n_seeds = matrix.outcome.shape[0]
    if n_seeds >= 2:
        generator = settings.generator(*labels, criterion.spec)
        resample = generator.integers(0, n_seeds, size=(settings.resamples, n_seeds))  # (B, R)
        curves = _median_curves(matrix.outcome[resample], axis=1)  # (B, F)
        replicates, _ = first_crossings(x, curves, criterion, threshold)
        low, high = percentile_interval(replicates[~np.isnan(replicates)], settings.confidence)
        row.update(f_star_lo=10 ** float(low), f_star_hi=10 ** float(high))
    else:
        row.update(f_star_lo=math.nan, f_star_hi=math.nan)
    present = ~np.isnan(matrix.outcome)  # (R, F)
    trial_x = np.broadcast_to(x, matrix.outcome.shape)[present]
    trial_crossed = criterion.crossed(matrix.outcome[present], threshold)
    fit = (fit_logistic(trial_x, trial_crossed, settings.confidence) if n_seeds >= 2 else
           LogisticFit("not fitted: a single trial per fraction (deterministic strategy)"))
    row.update(logistic_status=fit.status, logistic_f50=10 ** fit.log_f50,
               logistic_lo=10 ** fit.log_f50_lo, logistic_hi=10 ** fit.log_f50_hi)
    return row


def log_median(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median in log space of f* values coded 0 (at or below the range) ... +inf (above): the
    geometric mean of the two middle values for an even count; NaN when they are 0 and +inf."""
    ordered = np.sort(values, axis=axis)
    n = ordered.shape[axis]
    low = np.take(ordered, (n - 1) // 2, axis=axis)
    high = np.take(ordered, n // 2, axis=axis)
    with np.errstate(invalid="ignore"):
        return np.sqrt(low * high)


def adaptive_critical_fractions(results: Results, settings: BootstrapSettings) -> pd.DataFrame:
    """f* of an adaptive file's searches (CRITICAL_COLUMNS), per (model, strategy, criterion)."""
    swept = results.grid.amounts["fraction"]
    swept_min, swept_max = float(swept.min()), float(swept.max())
    rows = []
    for (model, strategy, criterion), cell in results.adaptive.groupby(
            ["model", "strategy", "criterion"], sort=False):
        settled = cell[cell["outcome"] != "pending"]
        f_star = settled["f_star"].to_numpy()  # (seeds) 0 ... inf coded
        crossed = f_star[f_star < math.inf]
        match = re.fullmatch(r"(.+?)([<>])(.+)", criterion)
        row = {"model": model, "strategy": strategy, "criterion": criterion,
               "description": f"{match[1]} {'below' if match[2] == '<' else 'above'} {match[3]} "
                              f"(adaptive search)",
               "threshold": float(match[3]), "n_seeds": len(f_star),
               "seeds_crossed": int(crossed.size),
               "seed_f_star_min": float(crossed.min()) if crossed.size else math.nan,
               "seed_f_star_max": float(crossed.max()) if crossed.size else math.nan,
               "swept_min": swept_min, "swept_max": swept_max,
               "bracket_lo": math.nan, "bracket_hi": math.nan, "f_star_lo": math.nan,
               "f_star_hi": math.nan, "logistic_status": "not fitted: adaptive search",
               "logistic_f50": math.nan, "logistic_lo": math.nan, "logistic_hi": math.nan}
        if not len(f_star):
            rows.append({**row, "status": NO_DATA, "f_star": math.nan})
            continue
        centre = float(log_median(f_star))
        status = (BELOW_RANGE if centre == 0 else NOT_REACHED if math.isinf(centre)
                  else ADAPTIVE if not math.isnan(centre) else
                  "undetermined: half the seeds at or below the range, half above it")
        row.update(status=status, f_star=centre)
        if len(f_star) >= 2:
            generator = settings.generator(model, strategy, criterion)
            resample = generator.integers(0, len(f_star), size=(settings.resamples, len(f_star)))
            replicates = log_median(f_star[resample], axis=1)
            low, high = percentile_interval(replicates[~np.isnan(replicates)], settings.confidence)
            row.update(f_star_lo=float(low), f_star_hi=float(high))
        rows.append(row)
    return pd.DataFrame(rows, columns=CRITICAL_COLUMNS)


def critical_fractions(results: Results, criteria=DEFAULT_CRITERIA,
                       settings: BootstrapSettings = BootstrapSettings(),
                       progress: Progress | None = None) -> pd.DataFrame:
    """f* for every (model, strategy, criterion) with trials (CRITICAL_COLUMNS).

    `f_star` is 0 ... inf coded: +inf = not reached (with `swept_max` the largest fraction
    swept), and CI ends of 0 / +inf mean "below / above the swept range". For an adaptive file
    the criteria are those its searches ran for (`criteria` is not used).
    """
    if results.adaptive is not None:
        return adaptive_critical_fractions(results, settings)
    progress = progress or Progress(enabled=False)
    cells = results.trials.groupby(["model_idx", "strategy_idx"], sort=True)
    progress.start("critical fractions", cells.ngroups * len(criteria))
    rows = []
    for _, cell in cells:
        model, strategy = cell["model"].iloc[0], cell["strategy"].iloc[0]
        for criterion in criteria:
            threshold = criterion.threshold(results.baseline, model)
            row = {"model": model, "strategy": strategy, "criterion": criterion.spec,
                   "description": criterion.describe(), "threshold": threshold}
            row.update(critical_fraction(cell, criterion, threshold, settings, (model, strategy)))
            rows.append(row)
            progress.advance()
    progress.finish()
    return pd.DataFrame(rows, columns=CRITICAL_COLUMNS)


def fraction_text(value: float, swept_min: float, swept_max: float) -> str:
    """A fraction from an f* row: 0 codes 'at or below the smallest swept fraction' and +inf
    'above the largest'."""
    if value == 0:
        return f"≤ {percent(swept_min)}"
    if math.isinf(value):
        return f"> {percent(swept_max)}"
    return percent(value)


def describe_f_star(row) -> str:
    """One reader-facing text for an f* row: estimate, CI and censoring, never extrapolated."""
    status = row["status"]
    if status == NOT_REACHED:
        return f"not reached (> {percent(row['swept_max'])}, the largest swept)"
    if status not in (INTERPOLATED, BRACKETED, BELOW_RANGE, ADAPTIVE):
        return status
    point = (f"≤ {percent(row['swept_min'])} (smallest swept)" if status == BELOW_RANGE
             else percent(row["f_star"]))
    low, high = row["f_star_lo"], row["f_star_hi"]
    if math.isnan(low) or math.isnan(high) or high == 0:  # no interval, or all of it below range
        return point
    low_text, high_text = (fraction_text(v, row["swept_min"], row["swept_max"]) for v in (low, high))
    return f"{point} [{low_text}, {high_text}]"
