"""Claim check: nearest swept fractions, the numbers at 0.1% / 25%, and f* in one table."""
import math

import pytest

from conftest import standard_sweep
from fracsweep_analysis.claims import claim_check, claim_tables, nearest_swept
from fracsweep_analysis.critical import DEFAULT_CRITERIA, critical_fractions
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import BootstrapSettings, summarise_curves

FAST = BootstrapSettings(resamples=500, seed=2)


@pytest.fixture
def analysed(standard_file):
    results = load_results(standard_file)
    curves = summarise_curves(results, ["top1_agreement", "mean_nll", "mean_kl"], FAST)
    critical = critical_fractions(results, DEFAULT_CRITERIA[:1], FAST)
    return results, curves, critical


def test_nearest_swept_fraction_is_named(analysed):
    results, _, _ = analysed
    exact = nearest_swept(results.grid, 0.001)
    assert exact.exact and exact.swept == pytest.approx(0.001) and exact.heading() == "f = 0.1%"
    nearest = nearest_swept(results.grid, 0.25)  # the grid has 17.8% and 31.6%: 31.6% is nearer in log f
    assert not nearest.exact and nearest.swept == pytest.approx(10 ** -0.5)
    assert nearest.heading() == "f = 31.6% (nearest swept to 25%)"


def test_claim_numbers_are_the_curve_medians(analysed):
    results, curves, _ = analysed
    claims, points = claim_check(results, curves)
    assert [p.quoted for p in points] == [0.001, 0.25]
    row = claims[(claims["strategy"] == "zero") & (claims["quoted_fraction"] == 0.001)].iloc[0]
    trials = results.trials
    at_point = trials[(trials["strategy"] == "zero") & (trials["fraction_idx"] == points[0].fraction_idx)]
    assert row["top1_agreement"] == at_point["top1_agreement"].median()
    assert row["delta_nll"] == pytest.approx(at_point["mean_nll"].median() - 1.4)
    assert row["mean_kl"] == pytest.approx(at_point["mean_kl"].median())
    assert row["top1_agreement_lo"] <= row["top1_agreement"] <= row["top1_agreement_hi"]
    assert row["n"] == 12


def test_destroyed_claims_say_non_finite(analysed):
    results, curves, critical = analysed
    claims, points = claim_check(results, curves)
    row = claims[(claims["strategy"] == "bitflip(bits=any)") & (claims["quoted_fraction"] == 0.25)].iloc[0]
    assert row["delta_nll"] == math.inf and row["n_nonfinite"] == 12
    table = claim_tables(claims, points, critical, "top1_agreement<0.5")["tiny"].set_index("strategy")
    assert table.loc["bitflip(bits=any)", "ΔNLL (nats) @ 31.6%"] == "non-finite"


def test_claim_table_has_one_row_per_strategy_with_f_star(analysed):
    results, curves, critical = analysed
    claims, points = claim_check(results, curves)
    table = claim_tables(claims, points, critical, "top1_agreement<0.5")["tiny"]
    assert list(table["strategy"]) == list(results.grid.strategies["strategy"])
    assert list(table.columns) == ["strategy", "top-1 agreement @ 0.1%", "ΔNLL (nats) @ 0.1%",
                                   "top-1 agreement @ 31.6%", "ΔNLL (nats) @ 31.6%", "f*"]
    by_strategy = table.set_index("strategy")
    assert by_strategy.loc["scale(factor=0.9)", "f*"].startswith("not reached (> 56.2%")
    assert by_strategy.loc["magnitude(then=zero)", "top-1 agreement @ 0.1%"].count("[") == 0
    assert by_strategy.loc["zero", "top-1 agreement @ 0.1%"].count("[") == 1


def test_missing_cells_are_marked(make_results):
    sweep = standard_sweep()
    at_point = {trial for trial, _, strategy, amount, _ in sweep.grid_trials()
                if strategy == 0 and amount == 4}  # every seed of "zero" at 0.1%
    results = load_results(make_results(standard_sweep(omit_trials=at_point)))
    curves = summarise_curves(results, ["top1_agreement", "mean_nll", "mean_kl"], FAST)
    critical = critical_fractions(results, DEFAULT_CRITERIA[:1], FAST)
    claims, points = claim_check(results, curves)
    table = claim_tables(claims, points, critical, "top1_agreement<0.5")["tiny"].set_index("strategy")
    assert table.loc["zero", "top-1 agreement @ 0.1%"] == "missing"
    assert table.loc["zero", "top-1 agreement @ 31.6%"] != "missing"
