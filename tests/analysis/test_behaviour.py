"""Behaviour probes: loading, probe curves and behaviour vs capability on planted answers."""
import math

import numpy as np
import pandas as pd
import pytest

from conftest import BASE, BEHAVIOUR_FRACTIONS, TRANSPLANT_RANDOM, TUNED, behaviour_sweep
from fracsweep_analysis.behaviour import (BEHAVIOUR_FIRST, CAPABILITY_FIRST, NEITHER, NO_BEHAVIOUR,
                                          NO_CHANGE, TOGETHER, behaviour_vs_capability,
                                          probe_curve_tables, probe_curves, probe_kinds,
                                          versus_table, which_first)
from fracsweep_analysis.critical import (BELOW_RANGE, DEFAULT_CRITERIA, INTERPOLATED, NOT_REACHED,
                                         critical_fractions, parse_criterion)
from fracsweep_analysis.load import load_results
from fracsweep_analysis.metrics import metric_info, probe_column
from fracsweep_analysis.stats import BootstrapSettings
from synthetic_results import write_results

FAST = BootstrapSettings(resamples=500, seed=3)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return load_results(write_results(tmp_path_factory.mktemp("behaviour") / "b.h5", behaviour_sweep()))


@pytest.fixture(scope="module")
def kinds(results):
    return probe_kinds(results)


@pytest.fixture(scope="module")
def curves(results, kinds):
    return probe_curves(results, kinds, FAST)


@pytest.fixture(scope="module")
def versus(results, kinds):
    critical = critical_fractions(results, DEFAULT_CRITERIA, FAST)
    return behaviour_vs_capability(results, kinds, FAST, critical).set_index(["model", "strategy", "kind"])


def log_interpolated_crossing(function, threshold, fractions=BEHAVIOUR_FRACTIONS):
    """The first crossing of `function` over the grid, linear in log10 f: the f* rule, computed
    here from the planted formula rather than from the file."""
    values = [function(f) for f in fractions]
    for i in range(1, len(values)):
        if (values[i - 1] - threshold) * (values[i] - threshold) < 0:
            weight = (threshold - values[i - 1]) / (values[i] - values[i - 1])
            log_f = math.log10(fractions[i - 1]) + weight * (math.log10(fractions[i]) - math.log10(fractions[i - 1]))
            return 10 ** log_f, (fractions[i - 1], fractions[i])
    raise AssertionError("no crossing")


def test_probe_kinds_are_described_by_the_files_column_attributes(results, kinds):
    assert [kind.kind for kind in kinds] == ["trigger", "control"]
    trigger = kinds[0]
    assert trigger.rate.label == results.columns.loc["probe_trigger_rate", "long_name"]
    assert trigger.logprob.unit == results.columns.loc["probe_trigger_logprob", "units"] == "nats"


def test_files_without_probes_have_no_kinds_and_empty_tables(standard_file):
    results = load_results(standard_file)
    assert results.grid.probe_kinds == () and probe_kinds(results) == []
    assert probe_curves(results, []).empty
    assert behaviour_vs_capability(results, []).empty


def test_probe_columns_are_metrics_with_their_worst_values():
    assert probe_column("probe_my_Kind_2_logprob") == ("my_Kind_2", "logprob")
    assert probe_column("probe_rate") is None and probe_column("mean_nll") is None
    assert metric_info("probe_trigger_rate").worst == 0.0
    assert metric_info("probe_trigger_logprob").worst == -math.inf
    with pytest.raises(ValueError, match="unknown metric"):
        metric_info("probe_trigger_speed")


def test_criteria_on_probe_rates_are_relative_to_each_models_probe_baseline(results):
    criterion = parse_criterion("probe_trigger_rate<x0.5")
    assert criterion.threshold(results.baseline, TUNED) == 0.5
    assert criterion.threshold(results.baseline, BASE) == 0.0


def test_probe_curves_are_means_over_seeds_with_an_interval(results, curves):
    trials = results.trials
    zero = trials[(trials["model"] == TUNED) & (trials["strategy"] == "zero")]
    for fraction_idx in (3, 6, 9):
        values = zero[zero["fraction_idx"] == fraction_idx]["probe_trigger_rate"].to_numpy()
        row = curves[(curves["model"] == TUNED) & (curves["strategy"] == "zero") & (curves["metric"] == "probe_trigger_rate")
                     & (curves["fraction_idx"] == fraction_idx)].iloc[0]
        assert row["n"] == len(values) == 10
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["median"] == pytest.approx(np.median(values), rel=1e-12)
        assert row["mean_lo"] <= row["mean"] <= row["mean_hi"]
        assert row["baseline"] == 1.0 and row["units"] == "1"
    # a planted rate that falls from 1 to ~0 across the sweep
    means = curves[(curves["model"] == TUNED) & (curves["strategy"] == "zero")
                   & (curves["metric"] == "probe_trigger_rate")].sort_values("fraction")["mean"].to_numpy()
    assert means[0] > 0.99 and means[-1] < 0.01


def test_nonfinite_logprobs_count_as_minus_infinity(curves):
    destroyed = curves[(curves["strategy"] == "bitflip(bits=exponent)") & (curves["model"] == TUNED)
                       & (curves["fraction"] > 0.005)]
    logprob = destroyed[destroyed["quantity"] == "logprob"]
    rate = destroyed[destroyed["quantity"] == "rate"]
    assert len(logprob) == 2 * 10 and (logprob["n_nonfinite"] == 10).all() and (logprob["mean"] == -math.inf).all()
    assert (rate["mean"] == 0).all() and (rate["n_nonfinite"] == 0).all()


def test_probe_curve_tables_have_a_row_per_strategy_and_kind(curves, results):
    tables = probe_curve_tables(curves)
    assert set(tables) == {TUNED, BASE}
    tuned = tables[TUNED]
    assert len(tuned) == len(results.grid.strategies) * 2
    assert list(tuned.columns[:3]) == ["strategy", "kind", "baseline"]
    assert len(tuned.columns) == 3 + len(BEHAVIOUR_FRACTIONS)
    zero = tuned[(tuned["strategy"] == "zero") & (tuned["kind"] == "trigger")].iloc[0]
    last = curves[(curves["model"] == TUNED) & (curves["strategy"] == "zero")
                  & (curves["metric"] == "probe_trigger_rate") & (curves["fraction"] == 1.0)].iloc[0]
    assert zero["baseline"] == "1"
    assert zero["100%"] == f"{last['mean']:.2g} [{last['mean_lo']:.2g}, {last['mean_hi']:.2g}]"


@pytest.mark.parametrize("strategy, verdict", [
    ("zero", BEHAVIOUR_FIRST), ("gaussian(sigma=0.5,relative=abs)", CAPABILITY_FIRST),
    ("bitflip(bits=sign)", TOGETHER), ("scale(factor=0.9)", NEITHER),
    ("magnitude(then=zero)", BEHAVIOUR_FIRST), ("bitflip(bits=exponent)", CAPABILITY_FIRST),
    ("delta(from=base,order=random)", BEHAVIOUR_FIRST), ("delta(from=tuned,order=random)", NO_CHANGE),
])
def test_which_breaks_first_is_the_planted_answer(versus, strategy, verdict):
    assert versus.loc[(TUNED, strategy, "trigger"), "first"] == verdict


def test_models_without_the_behaviour_have_nothing_to_lose(versus):
    for model, kind in ((BASE, "trigger"), (TUNED, "control"), (BASE, "control")):
        rows = versus.xs((model, kind), level=("model", "kind"))
        assert (rows["first"] == NO_BEHAVIOUR).all(), (model, kind)
        assert rows["behaviour_status"].isna().all()


def test_crossings_with_no_seed_noise_are_the_planted_formula(versus):
    """bitflip sign: every seed identical, so the median curve is the planted one and f* is its
    log-linear interpolation over the grid (not the exact planted 0.24%, which lies between)."""
    row = versus.loc[(TUNED, "bitflip(bits=sign)", "trigger")]
    expected, bracket = log_interpolated_crossing(lambda f: 1.0 / (1.0 + (f / 0.0024) ** 2), 0.5)
    assert row["behaviour_status"] == INTERPOLATED
    assert row["behaviour_f_star"] == pytest.approx(expected, rel=1e-9)
    assert (row["behaviour_bracket_lo"], row["behaviour_bracket_hi"]) == pytest.approx(bracket)
    nll, nll_bracket = log_interpolated_crossing(lambda f: 1.4 * (1.0 + 0.5 * (f / 0.0024) ** 2), 1.4 * 1.5)
    assert row["capability_f_star"] == pytest.approx(nll, rel=1e-9)
    assert (row["capability_bracket_lo"], row["capability_bracket_hi"]) == pytest.approx(nll_bracket)
    assert row["first_reason"] == f"both first past their thresholds at swept {100 * bracket[1]:.3g}%"


def test_capability_column_is_the_f_star_table_row(results, kinds, versus):
    critical = critical_fractions(results, DEFAULT_CRITERIA, FAST).set_index(["model", "strategy", "criterion"])
    for strategy in ("zero", "gaussian(sigma=0.5,relative=abs)"):
        f_star = critical.loc[(TUNED, strategy, "mean_nll>x1.5")]
        row = versus.loc[(TUNED, strategy, "trigger")]
        assert (row["capability_f_star"], row["capability_f_star_lo"], row["capability_f_star_hi"]) == \
            (f_star["f_star"], f_star["f_star_lo"], f_star["f_star_hi"])
    # computed the same way when the f* table lacks the criterion
    alone = behaviour_vs_capability(results, kinds, FAST).set_index(["model", "strategy", "kind"])
    assert alone.loc[(TUNED, "zero", "trigger"), "capability_f_star"] == versus.loc[(TUNED, "zero", "trigger"), "capability_f_star"]


def test_planted_crossings_are_recovered_with_intervals(versus):
    for strategy, planted in (("zero", 0.001), ("gaussian(sigma=0.5,relative=abs)", 0.03)):
        row = versus.loc[(TUNED, strategy, "trigger")]
        assert abs(math.log10(row["behaviour_f_star"] / planted)) < 0.1  # seed sd 0.1 decades
        assert row["behaviour_f_star_lo"] <= row["behaviour_f_star"] <= row["behaviour_f_star_hi"]
        assert row["behaviour_seeds_crossed"] == 10
    magnitude = versus.loc[(TUNED, "magnitude(then=zero)", "trigger")]
    assert magnitude["behaviour_n_seeds"] == 1 and math.isnan(magnitude["behaviour_f_star_lo"])


def crossing(status, f_star, low=math.nan, high=math.nan, bracket_hi=math.nan):
    return {"status": status, "f_star": f_star, "f_star_lo": low, "f_star_hi": high, "bracket_hi": bracket_hi}


@pytest.mark.parametrize("behaviour, capability, verdict", [
    (crossing(INTERPOLATED, 0.01, 0.008, 0.012, 0.0178), crossing(INTERPOLATED, 0.1, 0.09, 0.2, 0.178), BEHAVIOUR_FIRST),
    (crossing(INTERPOLATED, 0.01, 0.008, 0.012, 0.0178), crossing(INTERPOLATED, 0.013, 0.011, 0.02, 0.0316), TOGETHER),
    (crossing(INTERPOLATED, 0.01, 0.008, 0.012, 0.0178), crossing(NOT_REACHED, math.inf, math.inf, math.inf), BEHAVIOUR_FIRST),
    (crossing(NOT_REACHED, math.inf, 0.5, math.inf), crossing(INTERPOLATED, 0.01, 0.008, 0.012, 0.0178), CAPABILITY_FIRST),
    (crossing(NOT_REACHED, math.inf, 0.5, math.inf), crossing(INTERPOLATED, 0.6, 0.4, math.inf, 1.0), TOGETHER),
    (crossing(BELOW_RANGE, 0.0, 0.0, 0.0, 1e-4), crossing(BELOW_RANGE, 0.0, 0.0, 0.0, 1e-4), TOGETHER),
    (crossing(INTERPOLATED, 0.002, bracket_hi=0.00316), crossing(INTERPOLATED, 0.003, bracket_hi=0.00316), TOGETHER),
    (crossing(INTERPOLATED, 0.002, bracket_hi=0.00316), crossing(INTERPOLATED, 0.004, bracket_hi=0.00562), BEHAVIOUR_FIRST),
    (crossing(NOT_REACHED, math.inf), crossing(NOT_REACHED, math.inf), NEITHER),
])
def test_which_first_rules(behaviour, capability, verdict):
    assert which_first(behaviour, capability)[0] == verdict


def test_versus_table_shows_only_cells_with_a_behaviour_to_lose(versus):
    table = versus_table(versus.reset_index())
    assert set(table["model"]) == {TUNED} and set(table["kind"]) == {"trigger"}
    assert TRANSPLANT_RANDOM not in set(table["strategy"])  # a no-op on the tuned model
    assert len(table) == 8
    zero = table[table["strategy"] == "zero"].iloc[0]
    assert zero["first"].startswith("behaviour first (")
    assert "; between swept 0.1% and 0.178%" in zero.iloc[4]
    assert table[table["strategy"] == "scale(factor=0.9)"].iloc[0, 4] == "not reached (> 100%, the largest swept)"


def test_zero_baseline_rows_report_why(results, kinds):
    frame = behaviour_vs_capability(results, kinds, FAST)
    base = frame[(frame["model"] == BASE) & (frame["kind"] == "trigger")]
    assert (base["first_reason"] == "baseline rate is 0: nothing to lose").all()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2 * len(results.grid.strategies) * 2
