"""Fine-tune deltas: how much of a fine-tune must be kept for a behaviour to stay or to appear.

`delta from=D order=O` on model M moves a fraction f of M's in-scope values to D's values
(README, "Behaviour probes, a second checkpoint, fine-tune deltas"). For a probe kind whose
unperturbed rates differ between M and D, the checkpoint with the higher rate is the one that has
the behaviour (the fine-tuned one, for that kind):
  * revert: M has the behaviour, D not. f of the fine-tune is undone and 1 - f of it is kept.
    The behaviour is lost where M's rate falls below BEHAVIOUR_FACTOR x M's baseline rate; the
    part of the fine-tune that must be kept is 1 - f there.
  * transplant: D has the behaviour, M not. f of the fine-tune is moved onto M, so f is kept.
    The behaviour appears where the rate rises above BEHAVIOUR_FACTOR x D's baseline rate; the
    part that must be kept is f there.
order=random keeps a random part; order=largest moves the largest |delta| first, so a revert
keeps the smallest changes and a transplant keeps the largest. Crossings are critical fractions
of critical.py (median across seeds, bootstrap CI over seeds, swept bracket); order=largest is
deterministic: one trial per fraction, no interval.

`keep_check` answers "does keeping the QUOTED fraction (25%) of the fine-tune suffice?" from the
transplant rows at that fraction, or at the two swept fractions bracketing it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import formatting
from .behaviour import (BEHAVIOUR_FACTOR, CROSSING_FIELDS, ProbeKind, baseline_value,
                        crossing_text)
from .critical import BELOW_RANGE, NOT_REACHED, Criterion, critical_fraction, fraction_text
from .load import Results
from .progress import Progress
from .stats import BootstrapSettings

REVERT = "revert"
TRANSPLANT = "transplant"
DEFAULT_KEEP_FRACTION = 0.25
ALL_IN_SCOPE = "include=*;exclude="


def delta_strategies(results: Results) -> pd.DataFrame:
    """The grid's delta strategies: strategy label, donor model, order and scope, from the
    strategy as written in the job (/grid/strategy_spec, e.g. 'delta from=base order=largest')."""
    strategies = results.grid.strategies
    rows = []
    for _, strategy in strategies[strategies["strategy_name"] == "delta"].iterrows():
        parameters = dict(token.partition("=")[::2] for token in str(strategy["strategy_spec"]).split()[1:])
        rows.append({"strategy": strategy["strategy"], "donor": parameters.get("from", ""),
                     "order": parameters.get("order", "random"), "scope": strategy["strategy_scope"],
                     "deterministic": bool(strategy["deterministic"])})
    return pd.DataFrame(rows, columns=["strategy", "donor", "order", "scope", "deterministic"])


DELTA_COLUMNS = (["model", "strategy", "donor", "order", "scope", "kind", "direction", "tuned",
                  "tuned_rate", "other_rate", "note", "changed_at_full"]
                 + [f"crossing_{name}" for name in CROSSING_FIELDS]
                 + ["keep", "keep_lo", "keep_hi", "keep_bracket_absent", "keep_bracket_present"])


def delta_analysis(results: Results, kinds: list[ProbeKind],
                   settings: BootstrapSettings = BootstrapSettings(),
                   progress: Progress | None = None) -> pd.DataFrame:
    """One row per (model M, delta strategy with a donor D != M in the grid, kind) (DELTA_COLUMNS).

    direction is REVERT or TRANSPLANT (module docstring), "" when the two checkpoints' baseline
    rates are equal (note says so). keep is the fraction of the fine-tune that must be kept for
    the behaviour (rate above BEHAVIOUR_FACTOR x the tuned checkpoint's baseline rate), with its
    CI [keep_lo, keep_hi]; keep_bracket_absent / _present are the swept amounts, in kept terms,
    on either side of it (behaviour absent with the first kept, present with the second).
    changed_at_full is k_changed / k at the largest swept fraction (sites whose value the delta
    actually changes; Δ = 0 sites count in the fraction but change nothing)."""
    progress = progress or Progress(enabled=False)
    deltas = delta_strategies(results)
    models = set(results.grid.models["model"])
    rows = []
    if not kinds or deltas.empty:
        return pd.DataFrame(rows, columns=DELTA_COLUMNS)
    cells = results.trials.groupby(["model", "strategy"], sort=False)
    progress.start("fine-tune deltas", len(deltas) * len(models) * len(kinds))
    for (model, strategy), cell in cells:
        if strategy not in set(deltas["strategy"]):
            continue
        delta = deltas.set_index("strategy").loc[strategy]
        if delta["donor"] == model or delta["donor"] not in models:
            continue
        largest = cell[cell["fraction"] == cell["fraction"].max()]
        changed = (float((largest["k_changed"] / largest["k"]).median())
                   if "k_changed" in cell and (largest["k"] > 0).all() else math.nan)
        for kind in kinds:
            rows.append(_delta_row(results, cell, model, strategy, delta, kind, changed, settings))
            progress.advance()
    progress.finish()
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def _delta_row(results: Results, cell: pd.DataFrame, model: str, strategy: str, delta: pd.Series,
               kind: ProbeKind, changed: float, settings: BootstrapSettings) -> dict:
    donor = delta["donor"]
    own, other = (baseline_value(results, name, kind.rate.name) for name in (model, donor))
    row = {"model": model, "strategy": strategy, "donor": donor, "order": delta["order"],
           "scope": delta["scope"], "kind": kind.kind, "changed_at_full": changed, "note": ""}
    if math.isnan(own) or math.isnan(other) or own == other:
        row.update(direction="", tuned="", tuned_rate=max(own, other), other_rate=min(own, other),
                   note="the two checkpoints' baseline rates are equal: no behaviour to move"
                   if own == other else "no baseline rate in the file")
        return row
    direction = REVERT if own > other else TRANSPLANT
    tuned_rate, other_rate = max(own, other), min(own, other)
    threshold = BEHAVIOUR_FACTOR * tuned_rate
    row.update(direction=direction, tuned=model if direction == REVERT else donor,
               tuned_rate=tuned_rate, other_rate=other_rate)
    if other_rate >= threshold:
        row["note"] = (f"the checkpoint without the fine-tune already has rate "
                       f"{formatting.number(other_rate)}, at least {BEHAVIOUR_FACTOR:.0%} of the "
                       f"tuned rate: no threshold to cross")
        return row
    criterion = Criterion(kind.rate.name, "below" if direction == REVERT else "above",
                          BEHAVIOUR_FACTOR, "factor")
    crossing = {"threshold": threshold,
                **critical_fraction(cell, criterion, threshold, settings, (model, strategy))}
    row.update({f"crossing_{name}": crossing[name] for name in CROSSING_FIELDS})
    row.update(_kept(direction, crossing))
    return row


def _kept(direction: str, crossing: dict) -> dict:
    """The fraction of the fine-tune that must be kept, from the crossing of the moved fraction."""
    f_star, low, high = crossing["f_star"], crossing["f_star_lo"], crossing["f_star_hi"]
    bracket_lo, bracket_hi = crossing["bracket_lo"], crossing["bracket_hi"]
    if direction == TRANSPLANT:  # kept = moved; absent below the crossing, present past it
        return {"keep": f_star, "keep_lo": low, "keep_hi": high,
                "keep_bracket_absent": bracket_lo, "keep_bracket_present": bracket_hi}
    # revert: kept = 1 - reverted; present before the crossing, absent past it
    return {"keep": 1.0 - f_star, "keep_lo": 1.0 - high, "keep_hi": 1.0 - low,
            "keep_bracket_absent": 1.0 - bracket_hi, "keep_bracket_present": 1.0 - bracket_lo}


def keep_text(row) -> str:
    """'more than 78.5% [..]' / 'at least 21.5% ...': the fine-tune that must be kept."""
    status = row["crossing_status"]
    if row["note"]:
        return row["note"]
    swept_min, swept_max = row["crossing_swept_min"], row["crossing_swept_max"]
    if row["direction"] == REVERT:
        if status == NOT_REACHED:
            return (f"the behaviour survives reverting {formatting.percent(swept_max)} (the most swept): "
                    f"keeping {formatting.percent(1.0 - swept_max)} suffices")
        if status == BELOW_RANGE:
            return (f"lost already with {formatting.percent(swept_min)} reverted (the least swept): "
                    f"more than {formatting.percent(1.0 - swept_min)} must be kept")
        text = f"more than {formatting.percent(row['keep'])}"
    else:
        if status == NOT_REACHED:
            return (f"the behaviour does not appear with {formatting.percent(swept_max)} transplanted "
                    f"(the most swept)")
        if status == BELOW_RANGE:
            return (f"present already with {formatting.percent(swept_min)} transplanted (the least "
                    f"swept)")
        text = f"at least {formatting.percent(row['keep'])}"
    low, high = row["crossing_f_star_lo"], row["crossing_f_star_hi"]
    if not (math.isnan(low) or math.isnan(high)):
        if row["direction"] == REVERT:  # kept = 1 - reverted: the CI ends swap
            ends = (f"< {formatting.percent(1.0 - swept_max)}" if math.isinf(high)
                    else formatting.percent(1.0 - high),
                    f"> {formatting.percent(1.0 - swept_min)}" if low == 0
                    else formatting.percent(1.0 - low))
        else:
            ends = tuple(fraction_text(value, swept_min, swept_max) for value in (low, high))
        text += f" [{ends[0]}, {ends[1]}]"
    absent, present = row["keep_bracket_absent"], row["keep_bracket_present"]
    if np.isfinite([absent, present]).all():
        text += (f"; absent with {formatting.percent(absent)} kept, present with "
                 f"{formatting.percent(present)} kept")
    return text


def delta_table(delta: pd.DataFrame) -> pd.DataFrame:
    """Reader-facing rows: pairs where one checkpoint has the behaviour."""
    kept_part = {(REVERT, "random"): "a random part", (REVERT, "largest"): "the smallest changes",
                 (TRANSPLANT, "random"): "a random part", (TRANSPLANT, "largest"): "the largest changes"}
    rows = []
    columns = ["model", "strategy", "kind", "direction", "baseline rates (tuned / other)",
               "f moved where the rate crosses 50% of tuned [CI]", "part kept", "fine-tune that must be kept"]
    for _, row in delta[delta["direction"] != ""].iterrows():
        scope = "" if row["scope"] == ALL_IN_SCOPE else f" (scope {row['scope']})"
        direction = (f"revert {row['model']} toward {row['donor']}" if row["direction"] == REVERT
                     else f"transplant {row['donor']}'s fine-tune onto {row['model']}")
        rows.append(dict(zip(columns, (
            row["model"], row["strategy"] + scope, row["kind"], direction,
            f"{formatting.number(row['tuned_rate'])} / {formatting.number(row['other_rate'])}",
            crossing_text(row, "crossing_") if not row["note"] else "—",
            kept_part.get((row["direction"], row["order"]), row["order"]), keep_text(row)))))
    return pd.DataFrame(rows, columns=columns)


# --- does keeping a quoted fraction suffice? ------------------------------------------------------

KEEP_CHECK_COLUMNS = ["model", "strategy", "order", "kind", "tuned", "tuned_rate", "threshold",
                      "quoted", "points", "verdict", "answer"]


def swept_points(results: Results, quoted: float) -> tuple[list[tuple[int, float]], bool]:
    """The fraction entries of the grid at `quoted` ([(fraction_idx, fraction)], True) or, when
    it is not swept, the nearest on each side that exist (False)."""
    amounts = results.grid.amounts
    fractions = amounts.loc[~amounts["is_count"], "fraction"]
    exact = fractions[np.isclose(fractions.to_numpy(), quoted, rtol=1e-9, atol=0.0)]
    if len(exact):
        return [(int(exact.index[0]), float(exact.iloc[0]))], True
    points = []
    below, above = fractions[fractions < quoted], fractions[fractions > quoted]
    if len(below):
        points.append((int(below.idxmax()), float(below.max())))
    if len(above):
        points.append((int(above.idxmin()), float(above.min())))
    return points, False


def keep_check(results: Results, delta: pd.DataFrame, probe_curves: pd.DataFrame,
               quoted: float = DEFAULT_KEEP_FRACTION) -> pd.DataFrame:
    """Per transplant row of `delta`: is the behaviour present with `quoted` of the fine-tune
    kept? Present means the median across seeds (the one trial of order=largest) above
    BEHAVIOUR_FACTOR x the tuned checkpoint's baseline rate, the rule of the crossings. `points`
    lists, per swept fraction used, (fraction, mean, mean_lo, mean_hi, median, n)."""
    rows = []
    transplants = delta[(delta["direction"] == TRANSPLANT) & (delta["note"] == "")]
    if transplants.empty:
        return pd.DataFrame(rows, columns=KEEP_CHECK_COLUMNS)
    points, exact = swept_points(results, quoted)
    rates = probe_curves[probe_curves["quantity"] == "rate"].set_index(
        ["model", "strategy", "kind", "fraction_idx"])
    for _, row in transplants.iterrows():
        threshold = BEHAVIOUR_FACTOR * row["tuned_rate"]
        measured = []
        for fraction_idx, fraction in points:
            key = (row["model"], row["strategy"], row["kind"], fraction_idx)
            if key not in rates.index:
                continue
            point = rates.loc[key]
            measured.append((fraction, float(point["mean"]), float(point["mean_lo"]), float(point["mean_hi"]),
                             float(point["median"]), int(point["n"])))
        verdict = _keep_verdict(measured, exact, quoted, threshold)
        rows.append({"model": row["model"], "strategy": row["strategy"], "order": row["order"],
                     "kind": row["kind"], "tuned": row["tuned"], "tuned_rate": row["tuned_rate"],
                     "threshold": threshold, "quoted": quoted, "points": measured,
                     "verdict": verdict,
                     "answer": _keep_answer(row, measured, exact, quoted, verdict)})
    return pd.DataFrame(rows, columns=KEEP_CHECK_COLUMNS)


def _keep_verdict(measured: list, exact: bool, quoted: float, threshold: float) -> str:
    """'yes' / 'no' / 'not determined by the grid' / 'no data'."""
    if not measured:
        return "no data"
    present = {fraction: median > threshold for fraction, _, _, _, median, _ in measured}
    if exact:
        return "yes" if present[measured[0][0]] else "no"
    below = [fraction for fraction in present if fraction < quoted]
    above = [fraction for fraction in present if fraction > quoted]
    if below and present[below[0]] and (not above or present[above[0]]):
        return "yes"
    if above and not present[above[0]] and (not below or not present[below[0]]):
        return "no"
    return "not determined by the grid"


def _rate_text(point: tuple, tuned_rate: float) -> str:
    fraction, mean, low, high, _, n = point
    share = f", {mean / tuned_rate:.0%} of the tuned rate" if tuned_rate > 0 else ""
    centre = (formatting.estimate(mean, low, high) + f" (mean of {n} seeds)" if n > 1
              else f"{formatting.number(mean)} (one trial)")
    return f"rate {centre} at {formatting.percent(fraction)}{share}"


def _keep_answer(row, measured: list, exact: bool, quoted: float, verdict: str) -> str:
    """One sentence with the numbers."""
    kept = {"largest": f"the {formatting.percent(quoted)} largest changes",
            "random": f"a random {formatting.percent(quoted)}"}.get(
        row["order"], f"{formatting.percent(quoted)} (order={row['order']})")
    question = (f"Keeping {kept} of {row['tuned']}'s fine-tune (transplanted onto {row['model']}), "
                f"{row['kind']} probes")
    if not measured:
        return f"{question}: no trials at or around {formatting.percent(quoted)}."
    where = ("" if exact else f" ({formatting.percent(quoted)} is not swept; the nearest swept "
             f"fractions {' and '.join(formatting.percent(p[0]) for p in measured)} bracket it)")
    numbers = "; ".join(_rate_text(point, row["tuned_rate"]) for point in measured)
    rule = (f"behaviour present = median rate above {BEHAVIOUR_FACTOR:.0%} of the tuned baseline "
            f"{formatting.number(row['tuned_rate'])}")
    answers = {"yes": "suffices", "no": "does not suffice",
               "not determined by the grid": "cannot be decided from the swept fractions"}
    return f"{question}: {answers.get(verdict, verdict)}{where} — {numbers} ({rule})."
