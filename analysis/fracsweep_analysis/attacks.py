"""Deliberate change under a budget (issue 11): how few chosen changes break a model.

* `read_paths(path)` / `paths_xarray(path)`: the `/paths` group (every flip of every `bfa` trial)
  as a pandas DataFrame / an xarray Dataset over `path_step`.
* `budget_table(results)`: per model x strategy, the smallest budget k (the `k` column: changed
  weights, or flipped bits for `bfa`; a fraction entry f has k = round(f * N)) at which the damage
  criterion is met, the per-seed spread for random strategies, and the ratio to a random baseline.
* `path_summaries(results)`: what each `bfa` search did, read from `/paths`.
* `attack_section(path)`: all of the above as a markdown section ("" for files without
  deliberate-change strategies); `attack_blocks` gives the same as report blocks.
* `main(argv)`: the `fracsweep-attacks FILE` command (analysis/bin/fracsweep-attacks).

Damage criterion (`criterion_for`):
  language models  mean over seeds of top1_agreement < 0.5;
  classifiers      mean over seeds of accuracy <= chance + 0.05, chance = 1 / classes.
A model is a classifier when its /grid/model_format is "sequential" (the engine's only classifier
format). Classes come from, in order: the `classes` argument; the `classes` key of the model's JSON
file (/grid/model_path) when that file is readable; the output layer's shape in /tensors (the
model's last tensor: a bias of length C or a (C, inputs) weight); otherwise DEFAULT_CLASSES (10),
and the criterion text says it was assumed.

Non-finite outputs: the engine counts a position whose logits hold NaN/Inf as disagreeing and
wrong (src/eval/metrics.cpp), so top1_agreement and accuracy stay finite and already include it;
a NaN metric (which the engine does not write, but other files may hold) counts as the metric's
worst value (0: damaged), the convention of metrics.py. The table also gives the smallest budget
at which any trial had non-finite outputs (status nonfinite_outputs / nonfinite_positions > 0),
since that can happen before the criterion is met.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from . import __version__, formatting
from .load import ResultsFileError, Results, _strings, load_results
from .metrics import metric_info
from .report import Bullets, Heading, Paragraph, Table, render_markdown

DELIBERATE_STRATEGIES = ("taylor", "wanda", "bfa", "finetune", "magnitude")
DEFAULT_BASELINE = "zero"
AGREEMENT_THRESHOLD = 0.5   # language models: mean top-1 agreement below this is damage
CHANCE_MARGIN = 0.05        # classifiers: mean accuracy at or below chance + this is damage
DEFAULT_CLASSES = 10        # classifiers whose class count is not recoverable from the file
INTERVAL_QUANTILES = (0.025, 0.5, 0.975)
PATH_COLUMNS = ("trial", "step", "offset", "tensor", "index_in_tensor", "bit", "old_value",
                "new_value", "objective", "mean_nll", "top1_agreement", "accuracy")
PATH_REQUIRED = ("trial", "step")
PATH_PREVIEW_ROWS = 5
CLASSIFIER_FORMATS = ("sequential",)
INTERVAL_TEXT = ("Per-seed k*: each seed's own smallest budget meeting the criterion; shown as "
                 "median [2.5th, 97.5th percentile] across seeds, empirical quantiles that stay on "
                 "the swept budgets (the smallest budget by which that share of seeds had met it; "
                 "with 10 seeds the ends are the smallest and largest per-seed k*)")


# --- /paths -----------------------------------------------------------------------------------

def _paths_columns(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict]] | None:
    """Columns of /paths (decoded strings) and each one's attributes; None without /paths."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(path, "no such file")
    if not h5py.is_hdf5(path):
        raise ResultsFileError(path, "not an HDF5 file (expected a fracsweep results file)")
    with h5py.File(path, "r") as h5:
        group = h5.get("paths")
        if group is None:
            return None
        if not isinstance(group, h5py.Group):
            raise ResultsFileError(path, "/paths is not a group")
        columns: dict[str, np.ndarray] = {}
        attributes: dict[str, dict] = {}
        for name, node in group.items():
            if not isinstance(node, h5py.Dataset):
                continue
            if node.ndim != 1:
                raise ResultsFileError(path, f"/paths/{name} should be 1-D over path_step, "
                                             f"found shape {node.shape}")
            is_text = h5py.check_string_dtype(node.dtype) is not None or node.dtype.kind == "S"
            columns[name] = _strings(node) if is_text else node[()]
            attributes[name] = {key: value.decode() if isinstance(value, bytes) else value
                                for key, value in node.attrs.items()
                                if key in ("long_name", "units")}
    missing = [name for name in PATH_REQUIRED if name not in columns]
    if missing:
        raise ResultsFileError(path, f"/paths lacks the column(s) {', '.join(missing)} "
                                     f"(found: {', '.join(columns) or 'nothing'})")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ResultsFileError(path, f"/paths columns differ in length ({listed}); every column "
                                     f"should have one entry per path_step")
    if "path_step" not in columns:
        columns = {"path_step": np.arange(next(iter(lengths.values())), dtype=np.int64), **columns}
    order = ["path_step", *[c for c in PATH_COLUMNS if c in columns],
             *[c for c in columns if c not in PATH_COLUMNS and c != "path_step"]]
    return {name: columns[name] for name in order}, attributes


def read_paths(path: str | Path) -> pd.DataFrame | None:
    """The /paths group as a DataFrame, one row per flip (path_step, trial, step from 1, offset,
    tensor, index_in_tensor, bit, old_value, new_value, objective, mean_nll, top1_agreement,
    accuracy); None when the file has no /paths (no bfa trials). Raises ResultsFileError (a
    ValueError naming the file) when the columns differ in length."""
    read = _paths_columns(Path(path))
    if read is None:
        return None
    columns, _ = read
    return pd.DataFrame(columns)


def paths_xarray(path: str | Path) -> xr.Dataset:
    """The /paths group as an xarray Dataset over the dimension `path_step`, with each column's
    long_name. Raises ResultsFileError when the file has no /paths or its columns disagree."""
    read = _paths_columns(Path(path))
    if read is None:
        raise ResultsFileError(path, "has no /paths group (it holds no bfa trials)")
    columns, attributes = read
    variables = {name: ("path_step", values, attributes.get(name, {}))
                 for name, values in columns.items() if name != "path_step"}
    dataset = xr.Dataset(variables, coords={"path_step": ("path_step", columns["path_step"],
                                                          attributes.get("path_step", {}))})
    dataset.attrs["source_file"] = str(path)
    return dataset


# --- the damage criterion ---------------------------------------------------------------------

@dataclass(frozen=True)
class DamageCriterion:
    model: str
    kind: str                  # "language model" or "classifier"
    metric: str                # top1_agreement or accuracy
    threshold: float
    inclusive: bool            # metric <= threshold (classifiers) or metric < threshold
    classes: int | None = None
    classes_source: str = ""

    def met(self, values) -> np.ndarray:
        """Which (mean) metric values meet the criterion; NaN counts as the worst value."""
        outcome = metric_info(self.metric).as_outcome(np.atleast_1d(np.asarray(values, dtype=float)))
        if self.inclusive:
            return outcome <= self.threshold + 1e-12
        return outcome < self.threshold

    def describe(self) -> str:
        if self.kind == "classifier":
            return (f"mean accuracy over seeds ≤ {self.threshold:.4g} (chance 1/{self.classes} "
                    f"+ {CHANCE_MARGIN:g}; {self.classes} classes {self.classes_source})")
        return f"mean top-1 agreement over seeds < {self.threshold:g}"


def model_classes(results: Results, model: str, classes: int | dict | None = None) -> tuple[int, str]:
    """(number of classes, where it came from) for a classifier in `results`."""
    if isinstance(classes, dict):
        classes = classes.get(model)
    if classes is not None:
        return int(classes), "(given)"
    models = results.grid.models.set_index("model")
    model_path = Path(str(models.loc[model, "model_path"]))
    if model_path.suffix == ".json" and model_path.is_file():
        try:
            spec = json.loads(model_path.read_text(encoding="utf-8"))
            if isinstance(spec, dict) and int(spec.get("classes", 0)) >= 2:
                return int(spec["classes"]), f"from the model file {model_path.name}"
        except (OSError, ValueError, TypeError):
            pass
    tensors = results.tensors
    if tensors is not None:
        own = tensors[tensors["model"] == model].sort_values("offset")
        if len(own):
            last = own.iloc[-1]
            dims = [int(d) for d in str(last["shape"]).split("x") if d.strip().isdigit()]
            if dims and dims[0] >= 2:
                return dims[0], f"from the output layer's shape ({last['name']}: {last['shape']})"
    return DEFAULT_CLASSES, (f"assumed: not recoverable from the file (pass classes=; default "
                             f"{DEFAULT_CLASSES})")


def criterion_for(results: Results, model: str, classes: int | dict | None = None) -> DamageCriterion:
    models = results.grid.models.set_index("model")
    if str(models.loc[model, "model_format"]) in CLASSIFIER_FORMATS:
        n_classes, source = model_classes(results, model, classes)
        return DamageCriterion(model, "classifier", "accuracy", 1.0 / n_classes + CHANCE_MARGIN,
                               inclusive=True, classes=n_classes, classes_source=source)
    return DamageCriterion(model, "language model", "top1_agreement", AGREEMENT_THRESHOLD,
                           inclusive=False)


# --- budget table -----------------------------------------------------------------------------

def _quantile_on_grid(values: np.ndarray, q: float) -> float:
    """Empirical quantile (inverse CDF): the smallest value v with share(values <= v) >= q.
    +inf (a seed that never met the criterion) sorts last."""
    ordered = np.sort(np.asarray(values, dtype=float))
    index = max(math.ceil(round(q * len(ordered), 9)) - 1, 0)
    return float(ordered[index])


def _first_met(budgets: np.ndarray, met: np.ndarray) -> float:
    hits = np.flatnonzero(met)
    return float(budgets[hits[0]]) if hits.size else math.inf


def _strategy_row(trials: pd.DataFrame, criterion: DamageCriterion,
                  path_lengths: pd.Series | None = None, nonfinite_is_damage: bool = False) -> dict:
    """The budget summary of one model x strategy (its trials; `path_lengths`: /paths rows per
    trial id, for bfa)."""
    info = metric_info(criterion.metric)
    frame = pd.DataFrame({"k": trials["k"].to_numpy(np.int64), "seed": trials["seed"].to_numpy(),
                          "outcome": info.as_outcome(trials[criterion.metric].to_numpy(float)),
                          "nonfinite": trials["nonfinite_positions"].to_numpy() > 0})
    frame["metric"] = frame["outcome"]  # as measured (NaN as the worst value), for display
    if nonfinite_is_damage:
        frame.loc[frame["nonfinite"], "outcome"] = info.worst
    if "k_changed" in trials:
        frame["k_changed"] = trials["k_changed"].to_numpy(float)
    by_k = frame.groupby("k", sort=True)
    budgets = np.array(sorted(by_k.groups), dtype=np.int64)
    mean = by_k["outcome"].mean().to_numpy()
    met = criterion.met(mean)
    k_star = _first_met(budgets, met)
    reached = math.isfinite(k_star)
    at = budgets == k_star
    nonfinite_k = budgets[by_k["nonfinite"].any().to_numpy()]
    below = budgets[budgets < k_star] if reached else budgets
    # Flips a bfa search actually made: budgets beyond its longest path (limit=N, or a stop once
    # the objective is non-finite) replay that path, so 'not reached' is bounded by it.
    searched = int(budgets[-1])
    if path_lengths is not None:
        own_paths = path_lengths.reindex(trials["trial"].to_numpy()).dropna()
        if len(own_paths):
            searched = min(searched, int(own_paths.max()))
    deterministic = bool(trials["deterministic"].iloc[0])
    n_seeds = int(frame["seed"].nunique())
    row = dict(deterministic=deterministic, n_seeds=n_seeds, n_budgets=len(budgets),
               min_budget=int(budgets[0]), max_budget=int(budgets[-1]), max_searched=searched,
               reached=reached, k_star=k_star if reached else math.nan,
               k_below=float(below[-1]) if below.size else math.nan,
               metric_at_k_star=float(by_k["metric"].mean().to_numpy()[at][0]) if reached else math.nan,
               k_changed_at_k_star=(float(by_k["k_changed"].mean().to_numpy()[at][0])
                                    if reached and "k_changed" in frame else math.nan),
               stays_met=bool(met[at.argmax():].all()) if reached else False,
               first_nonfinite_k=float(nonfinite_k[0]) if nonfinite_k.size else math.nan,
               seed_k_star=(), seeds_reached=0 if not reached else 1,
               k_star_median=math.nan, k_star_low=math.nan, k_star_high=math.nan)
    if not deterministic and n_seeds > 1:
        per_seed = {}
        for seed, own in frame.groupby("seed", sort=True):
            seed_k = own.groupby("k", sort=True)["outcome"].mean()
            per_seed[int(seed)] = _first_met(seed_k.index.to_numpy(), criterion.met(seed_k.to_numpy()))
        values = np.array(list(per_seed.values()))
        low, median, high = (_quantile_on_grid(values, q) for q in INTERVAL_QUANTILES)
        row.update(seed_k_star=tuple(values.tolist()), seeds_reached=int(np.isfinite(values).sum()),
                   k_star_median=median, k_star_low=low, k_star_high=high)
    return row


def _resolve_baseline(results: Results, baseline: str | None) -> str | None:
    """The strategy label the ratios are taken against: `baseline` as a label, else as a strategy
    name held by exactly one non-deterministic strategy; None when absent."""
    if not baseline:
        return None
    strategies = results.grid.strategies
    if baseline in set(strategies["strategy"]):
        return baseline
    named = strategies[(strategies["strategy_name"] == baseline) & ~strategies["deterministic"]]
    if len(named) == 1:
        return str(named["strategy"].iloc[0])
    if len(named) > 1:
        raise ValueError(f"baseline {baseline!r} names {len(named)} strategies "
                         f"({', '.join(named['strategy'])}); give one label")
    return None


def _ratio(base: pd.Series | None, row: dict) -> dict:
    """How many times fewer changes than the baseline: base k* / k*, with the baseline's
    per-seed interval carried over; bounds when either side did not reach the criterion."""
    out = dict(ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan, ratio_bound="")
    if base is None:
        return out
    if row["reached"] and base["reached"]:
        out.update(ratio=base["k_star"] / row["k_star"], ratio_bound="=")
        if not math.isnan(base["k_star_low"]):
            out.update(ratio_low=base["k_star_low"] / row["k_star"],
                       ratio_high=base["k_star_high"] / row["k_star"])
    elif row["reached"]:   # baseline k* beyond the budgets it was swept to
        out.update(ratio=base["max_searched"] / row["k_star"], ratio_bound=">")
    elif base["reached"]:  # this strategy's k* beyond the budgets (flips) it searched
        out.update(ratio=base["k_star"] / row["max_searched"], ratio_bound="<")
    return out


def _as_results(results_or_path) -> Results:
    return results_or_path if isinstance(results_or_path, Results) else load_results(results_or_path)


def budget_table(results_or_path, baseline: str | None = DEFAULT_BASELINE,
                 classes: int | dict | None = None, models: list[str] | None = None,
                 nonfinite_is_damage: bool = False) -> pd.DataFrame:
    """Per model x strategy, the smallest swept budget k meeting the damage criterion.

    Columns: model, kind, metric, criterion, strategy, strategy_name, deterministic, n_seeds,
    n_budgets, min_budget, max_budget, max_searched (max_budget, or for bfa the longest path:
    flips actually searched), reached, k_star (NaN: not reached within the swept budgets, up to
    max_searched), k_below (the next smaller swept budget, where the criterion was not met: the
    first crossing lies in (k_below, k_star]), metric_at_k_star (mean over seeds),
    k_changed_at_k_star (weights whose bits changed, mean over seeds), stays_met (met at every larger budget too), first_nonfinite_k,
    seed_k_star (per-seed k*, seed order, inf: not reached), seeds_reached, k_star_median,
    k_star_low, k_star_high (random strategies: quantiles of the per-seed k*, see INTERVAL_TEXT),
    baseline, ratio (baseline k* / k*: how many times fewer changes), ratio_low, ratio_high (the
    baseline's interval / k*), ratio_bound ('=' exact, '>' baseline not reached so a lower bound,
    '<' this strategy not reached so an upper bound, '' undefined); bounds use max_searched.

    Budgets from count and fraction entries share the k axis; entries with the same k are pooled.
    `baseline`: a strategy label or the name of one random strategy (default 'zero'); `classes`:
    an int or {model: int} overriding the class count of classifiers; `nonfinite_is_damage`:
    count every trial with non-finite outputs (any position) as damaged, whatever its metric
    (default: only the metric decides, non-finite positions counting as wrong within it).
    `attrs['caption']` states the criteria, the interval and the ratio.
    """
    results = _as_results(results_or_path)
    trials = results.trials
    base_label = _resolve_baseline(results, baseline)
    paths = read_paths(results.path) if results.path.is_file() else None
    path_lengths = paths.groupby("trial").size() if paths is not None and len(paths) else None
    rows = []
    criteria = {}
    for model in results.grid.models["model"]:
        if models is not None and model not in models:
            continue
        criterion = criterion_for(results, model, classes)
        criteria[model] = criterion
        own = trials[trials["model"] == model]
        model_rows = []
        for strategy_idx, strategy in results.grid.strategies.iterrows():
            selected = own[own["strategy_idx"] == strategy_idx]
            if selected.empty:
                continue
            model_rows.append(dict(model=model, kind=criterion.kind, metric=criterion.metric,
                                   criterion=criterion.describe(), strategy=strategy["strategy"],
                                   strategy_name=strategy["strategy_name"],
                                   **_strategy_row(selected, criterion, path_lengths,
                                                   nonfinite_is_damage)))
        base = next((pd.Series(r) for r in model_rows if r["strategy"] == base_label), None)
        for row in model_rows:
            row["baseline"] = base_label if base is not None else ""
            row.update(_ratio(base, row))
        rows += model_rows
    table = pd.DataFrame(rows)
    criteria_text = "; ".join(f"{model}: {c.describe()}" for model, c in criteria.items())
    table.attrs["caption"] = (
        f"k* = the smallest swept budget (changed weights; flipped bits for bfa) at which "
        f"{criteria_text}; a NaN metric counts as damage"
        + ("; so does any trial with non-finite outputs" if nonfinite_is_damage else "")
        + f". {INTERVAL_TEXT}. Ratio = the "
        f"{base_label or 'baseline'} strategy's k* / the strategy's k* (how many times fewer "
        f"changes), with the baseline's per-seed interval divided by k*.")
    table.attrs["criteria"] = criteria
    table.attrs["baseline"] = base_label
    return table


# --- bfa paths --------------------------------------------------------------------------------

@dataclass
class PathSummary:
    model: str
    strategy: str
    trial: int                 # the trial whose path is summarised: the largest budget's
    budget: int                # its k
    steps: int                 # flips searched (rows of its path)
    ended: str                 # why the search stopped where it did
    weights_changed: int       # distinct offsets flipped
    criterion_step: int | None  # first step whose metric meets the criterion
    metric: str
    metric_at_end: float
    tensors: list[tuple[str, int]]  # tensor -> flips, most first
    bits: list[tuple[int, int]]     # bit -> flips, most first
    preview: pd.DataFrame           # the first rows of the path
    inconsistent_trials: list[int] = field(default_factory=list)  # paths not a prefix of this one


def _limit_of(label: str) -> int | None:
    found = re.search(r"\blimit=(\d+)", label)
    return int(found.group(1)) if found else None


def path_summaries(results_or_path, classes: int | dict | None = None,
                   preview_rows: int = PATH_PREVIEW_ROWS) -> list[PathSummary]:
    """One summary per model x bfa strategy with /paths rows: the path of its largest budget."""
    results = _as_results(results_or_path)
    paths = read_paths(results.path)
    if paths is None or paths.empty:
        return []
    trials = results.trials.set_index("trial")
    known = paths["trial"].isin(trials.index)
    if not known.all():
        missing = sorted(set(paths.loc[~known, "trial"]))[:5]
        raise ResultsFileError(results.path, f"/paths refers to trial(s) {missing} absent from /trials")
    paths = paths.join(trials[["model", "strategy", "k"]], on="trial")
    summaries = []
    for (model, strategy), flips in paths.groupby(["model", "strategy"], sort=False):
        criterion = criterion_for(results, model, classes)
        budgets = flips.groupby("trial").agg(k=("k", "first"), n=("step", "size"))
        chosen = int(budgets.sort_values(["k", "n"]).index[-1])
        path = flips[flips["trial"] == chosen].sort_values("step")
        steps, budget = len(path), int(budgets.loc[chosen, "k"])
        values = path[criterion.metric].to_numpy(float) if criterion.metric in path else np.full(steps, np.nan)
        met = criterion.met(values)
        limit = _limit_of(strategy)
        finite_end = all(math.isfinite(float(path[c].iloc[-1])) for c in ("objective", "mean_nll") if c in path)
        if steps >= budget:
            ended = f"searched the whole budget of {budget} flips"
        elif limit is not None and steps == limit:
            ended = f"stopped at limit={limit} (budget {budget})"
        elif not finite_end:
            ended = f"stopped after step {steps}: the objective became non-finite (budget {budget})"
        else:
            ended = f"stopped after step {steps} of a budget of {budget}"
        reference = path[["offset", "bit"]].to_numpy()
        inconsistent = [int(trial) for trial, other in flips.groupby("trial")
                        if trial != chosen and not np.array_equal(
                            other.sort_values("step")[["offset", "bit"]].to_numpy(),
                            reference[:len(other)])]
        preview_columns = [c for c in ("step", "tensor", "index_in_tensor", "bit", "old_value",
                                       "new_value", "objective", criterion.metric) if c in path]
        summaries.append(PathSummary(
            model=model, strategy=strategy, trial=chosen, budget=budget, steps=steps, ended=ended,
            weights_changed=int(path["offset"].nunique()) if "offset" in path else steps,
            criterion_step=int(path["step"].to_numpy()[met.argmax()]) if met.any() else None,
            metric=criterion.metric, metric_at_end=float(values[-1]) if steps else math.nan,
            tensors=Counter(path["tensor"]).most_common() if "tensor" in path else [],
            bits=Counter(int(b) for b in path["bit"]).most_common() if "bit" in path else [],
            preview=path[preview_columns].head(preview_rows).reset_index(drop=True),
            inconsistent_trials=inconsistent))
    return summaries


# --- markdown ---------------------------------------------------------------------------------

def has_deliberate_strategies(results: Results) -> bool:
    return bool(results.grid.strategies["strategy_name"].isin(DELIBERATE_STRATEGIES).any())


def _budget(value: float) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "not reached"
    return f"{int(value)}"


def _times(value: float) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _k_star_text(row: pd.Series) -> str:
    if row["reached"]:
        below = "" if math.isnan(row["k_below"]) else f" (not at {_budget(row['k_below'])})"
        return _budget(row["k_star"]) + below
    if row["max_searched"] < row["max_budget"]:
        flips = "flip" if row["max_searched"] == 1 else "flips"
        return (f"not reached within the {row['max_searched']} {flips} searched (budgets up to "
                f"{row['max_budget']} replay them)")
    return f"not reached within the swept budgets (≤ {row['max_budget']})"


def _seed_text(row: pd.Series) -> str:
    if row["deterministic"] or row["n_seeds"] <= 1:
        return "— (one trial per budget)"
    if row["seeds_reached"] == 0:
        return f"not reached (0/{row['n_seeds']} seeds)"
    high = row["k_star_high"]
    high_text = f"> {row['max_searched']}" if math.isinf(high) else _budget(high)
    median = row["k_star_median"]
    median_text = f"> {row['max_searched']}" if math.isinf(median) else _budget(median)
    return (f"{median_text} [{_budget(row['k_star_low'])}, {high_text}] "
            f"({row['seeds_reached']}/{row['n_seeds']} seeds)")


def _ratio_text(row: pd.Series) -> str:
    bound = row["ratio_bound"]
    if not bound:
        return "—"
    value = _times(row["ratio"])
    if bound == ">":
        return f"> {value}"
    if bound == "<":
        return f"< {value}"
    if math.isnan(row["ratio_low"]) or row["strategy"] == row["baseline"] \
            or row["ratio_low"] == row["ratio_high"] == row["ratio"]:  # one point: no interval
        return value
    high = row["ratio_high"]
    high_text = f"> {_times(row['max_searched_base'] / row['k_star'])}" if math.isinf(high) \
        else _times(high)
    return f"{value} [{_times(row['ratio_low'])}, {high_text}]"


def display_table(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """One model's rows of `budget_table` as text cells."""
    own = table[table["model"] == model].copy()
    base = own[own["strategy"] == own["baseline"]]
    own["max_searched_base"] = base["max_searched"].iloc[0] if len(base) else math.nan
    metric = own["metric"].iloc[0]
    baseline = own["baseline"].iloc[0] or "baseline"
    return pd.DataFrame({
        "strategy": own["strategy"],
        "seeds": own["n_seeds"].astype(str),
        "k*": [_k_star_text(r) for _, r in own.iterrows()],
        f"{metric} at k*": [formatting.number(v, 3) for v in own["metric_at_k_star"]],
        "weights changed at k*": [formatting.number(v, 6) for v in own["k_changed_at_k_star"]],
        "per-seed k*: median [2.5%, 97.5%]": [_seed_text(r) for _, r in own.iterrows()],
        f"times fewer changes than {baseline}": [_ratio_text(r) for _, r in own.iterrows()],
        "non-finite outputs from k": [_budget(v) for v in own["first_nonfinite_k"]],
    })


def _resolution_text(own: pd.DataFrame) -> str:
    """How finely the swept budgets bracket the baseline's k* (and so every ratio)."""
    base = own[own["strategy"] == own["baseline"]]
    if base.empty or not base["reached"].iloc[0] or math.isnan(base["k_below"].iloc[0]):
        return ""
    row = base.iloc[0]
    factor = row["k_star"] / row["k_below"]
    return (f"Resolution: {row['strategy']} met the criterion at {_budget(row['k_star'])} but "
            f"not at the next smaller swept budget, {_budget(row['k_below'])}: its k*, and so "
            f"every ratio above, is known only to within a factor {factor:.3g} (the true ratios "
            f"may be up to {factor:.3g}x smaller).")


def _path_blocks(summary: PathSummary) -> list:
    criterion_text = (f"Criterion first met after flip {summary.criterion_step}"
                      if summary.criterion_step is not None else "Criterion not met along the path")
    weights = "weight" if summary.weights_changed == 1 else "weights"
    tensors = ", ".join(f"{name} ×{n}" for name, n in summary.tensors)
    bits = ", ".join(f"bit {bit} ×{n}" for bit, n in summary.bits)
    items = [f"Flips searched: {summary.steps} (trial {summary.trial}); {summary.ended}; "
             f"{summary.weights_changed} distinct {weights} changed",
             f"{criterion_text}; {summary.metric} after the last flip "
             f"{formatting.number(summary.metric_at_end, 4)}",
             f"Tensors flipped: {tensors}", f"Bits flipped: {bits}"]
    if summary.inconsistent_trials:
        items.append(f"Paths of trial(s) {summary.inconsistent_trials} are not a prefix of this one")
    preview = summary.preview.copy()
    for column in preview.columns:
        if column not in ("step", "tensor", "index_in_tensor", "bit"):
            preview[column] = [formatting.number(float(v), 4) for v in preview[column]]
    preview = preview.astype(str)
    return [Heading(4, f"{summary.strategy} on {summary.model}: path"), Bullets(items),
            Table(preview, f"First {len(preview)} of {summary.steps} flips")]


def attack_blocks(results_or_path, baseline: str | None = DEFAULT_BASELINE,
                  classes: int | dict | None = None, preview_rows: int = PATH_PREVIEW_ROWS,
                  nonfinite_is_damage: bool = False) -> list:
    """The attack section as report blocks (report.py's document model); [] without
    deliberate-change strategies."""
    results = _as_results(results_or_path)
    if not has_deliberate_strategies(results):
        return []
    table = budget_table(results, baseline=baseline, classes=classes,
                         nonfinite_is_damage=nonfinite_is_damage)
    summaries = path_summaries(results, classes=classes, preview_rows=preview_rows)
    base = table.attrs["baseline"]
    blocks: list = [Heading(2, "Deliberate change: budget to break the model"), Paragraph(
        "k* is the smallest swept budget — changed weights, or flipped bits for bfa (a fraction "
        "entry f counts as k = round(f·N) weights of the N in scope) — at which the damage "
        "criterion is met by the mean over seeds; 'not reached' gives the largest budget swept. "
        "A NaN metric counts as damage; positions with non-finite outputs count as wrong and "
        "disagreeing (the engine's metrics)"
        + ("; every trial with non-finite outputs counts as damaged (nonfinite_is_damage)"
           if nonfinite_is_damage else "")
        + "; the last column gives the smallest budget at which any trial had non-finite "
        f"outputs. {INTERVAL_TEXT}. "
        + (f"The ratio is {base}'s k* / the strategy's k* (how many times fewer changes); its "
           f"interval is {base}'s per-seed interval / k*; '>' where {base} never met the "
           f"criterion, '<' where the strategy did not." if base else
           f"No baseline strategy {baseline!r} in the file: no ratios."))]
    for model in table["model"].unique():
        criterion = table.attrs["criteria"][model]
        blocks.append(Heading(3, f"{model} ({criterion.kind})"))
        blocks.append(Table(display_table(table, model), f"Criterion: {criterion.describe()}."))
        resolution = _resolution_text(table[table["model"] == model])
        if resolution:
            blocks.append(Paragraph(resolution))
        not_held = table[(table["model"] == model) & table["reached"] & ~table["stays_met"]]
        if len(not_held):
            blocks.append(Paragraph("Met at k* but not at every larger budget: "
                                    + ", ".join(not_held["strategy"]) + "."))
        for summary in summaries:
            if summary.model == model:
                blocks += _path_blocks(summary)
    return blocks


def attack_section(path, baseline: str | None = DEFAULT_BASELINE,
                   classes: int | dict | None = None, preview_rows: int = PATH_PREVIEW_ROWS,
                   nonfinite_is_damage: bool = False) -> str:
    """Markdown section 'Deliberate change: budget to break the model': per model the budget
    table and the criterion, and each bfa strategy's path. '' when the file has no
    deliberate-change strategies (taylor, wanda, bfa, finetune, magnitude)."""
    blocks = attack_blocks(path, baseline=baseline, classes=classes, preview_rows=preview_rows,
                           nonfinite_is_damage=nonfinite_is_damage)
    return render_markdown(blocks) if blocks else ""


# --- command line -----------------------------------------------------------------------------

EXIT_OK, EXIT_INPUT = 0, 3


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="fracsweep-attacks",
        description="Print the markdown section 'Deliberate change: budget to break the model': "
                    "per model and strategy the smallest budget (changed weights / flipped bits) "
                    "at which top-1 agreement drops below 0.5 (language models) or accuracy to "
                    "chance + 0.05 (classifiers), the random baseline's per-seed interval, the "
                    "ratio, and each bfa search's path. Prints nothing for files without "
                    "deliberate-change strategies.",
        epilog="Exit status: 0 ok, 2 bad options, 3 unreadable or inconsistent file.")
    command.add_argument("results", type=Path, help="results file (HDF5, schema fracsweep-results/1)")
    command.add_argument("--baseline", default=DEFAULT_BASELINE, metavar="STRATEGY",
                         help="random strategy the ratios are taken against: a label, or the name "
                              "of one random strategy (default: %(default)s)")
    command.add_argument("--classes", type=int, metavar="N",
                         help="class count of every classifier (default: from the model file or "
                              f"its output layer's shape, else {DEFAULT_CLASSES})")
    command.add_argument("--path-rows", type=int, default=PATH_PREVIEW_ROWS, metavar="N",
                         help="rows of each bfa path shown (default: %(default)s)")
    command.add_argument("--nonfinite-is-damage", action="store_true",
                         help="count every trial with non-finite outputs as damaged, whatever its "
                              "metric (default: the metric decides; non-finite positions count "
                              "as wrong within it)")
    command.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return command


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        text = attack_section(options.results, baseline=options.baseline, classes=options.classes,
                              preview_rows=options.path_rows,
                              nonfinite_is_damage=options.nonfinite_is_damage)
    except ValueError as error:  # ResultsFileError included
        print(f"fracsweep-attacks: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    sys.stdout.write(text)
    return EXIT_OK
