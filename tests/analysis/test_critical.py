"""Critical fraction f*: interpolation, censoring, planted answers and CI coverage."""
import math

import numpy as np
import pandas as pd
import pytest

from conftest import LOG_FRACTIONS, standard_sweep
from fracsweep_analysis.critical import (BELOW_RANGE, BRACKETED, DEFAULT_CRITERIA, INTERPOLATED,
                                         NOT_REACHED, Criterion, critical_fraction,
                                         critical_fractions, crossing_bracket, describe_f_star,
                                         first_crossings, fit_logistic, parse_criterion)
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import BootstrapSettings
from synthetic_results import write_results

FAST = BootstrapSettings(resamples=1000, seed=5)
AGREEMENT_BELOW_HALF = Criterion("top1_agreement", "below", 0.5)
KL_ABOVE_HALF = Criterion("mean_kl", "above", 0.5)


def test_interpolates_linearly_in_log_fraction():
    x = np.log10([1e-4, 1e-3, 1e-2])
    log_star, status = first_crossings(x, np.array([[0.95, 0.8, 0.2]]), AGREEMENT_BELOW_HALF, 0.5)
    # between 1e-3 (0.8) and 1e-2 (0.2): halfway in metric -> halfway in log f
    assert status[0] == INTERPOLATED
    assert log_star[0] == pytest.approx(-2.5)


def test_nonfinite_first_crossing_uses_the_bracket_midpoint():
    x = np.log10([1e-3, 1e-2, 1e-1])
    log_star, status = first_crossings(x, np.array([[0.1, math.inf, math.inf]]), KL_ABOVE_HALF, 0.5)
    assert status[0] == BRACKETED and log_star[0] == pytest.approx(-2.5)


def test_censored_curves_are_flagged_not_extrapolated():
    x = np.log10([1e-3, 1e-2, 1e-1])
    curves = np.array([[0.9, 0.8, 0.7],     # never below 0.5
                       [0.4, 0.3, 0.1],     # already below at the smallest fraction
                       [np.nan, np.nan, np.nan]])
    log_star, status = first_crossings(x, curves, AGREEMENT_BELOW_HALF, 0.5)
    assert status[0] == NOT_REACHED and log_star[0] == math.inf
    assert status[1] == BELOW_RANGE and log_star[1] == -math.inf
    assert math.isnan(log_star[2])


def test_missing_points_are_skipped_when_bracketing():
    x = np.log10([1e-4, 1e-3, 1e-2])
    log_star, status = first_crossings(x, np.array([[0.9, np.nan, 0.1]]), AGREEMENT_BELOW_HALF, 0.5)
    assert status[0] == INTERPOLATED and log_star[0] == pytest.approx(-3.0)


def test_first_crossing_wins_on_non_monotone_curves():
    x = np.log10([1e-4, 1e-3, 1e-2, 1e-1])
    log_star, _ = first_crossings(x, np.array([[0.9, 0.3, 0.7, 0.1]]), AGREEMENT_BELOW_HALF, 0.5)
    assert log_star[0] == pytest.approx(-4.0 + (0.5 - 0.9) / (0.3 - 0.9))


@pytest.fixture(scope="module")
def standard_critical(tmp_path_factory):
    path = write_results(tmp_path_factory.mktemp("critical") / "results.h5", standard_sweep())
    return critical_fractions(load_results(path), DEFAULT_CRITERIA, FAST).set_index(["strategy", "criterion"])


@pytest.mark.parametrize("criterion", [c.spec for c in DEFAULT_CRITERIA])
def test_planted_f_star_is_recovered_for_every_default_criterion(standard_critical, criterion):
    """The synthetic outcome crosses all four default thresholds at each seed's planted f*."""
    for strategy, planted in (("zero", 0.01),
                              ("gaussian(sigma=0.1,relative=abs)[include=layers.0.*;exclude=]", 0.02),
                              ("gaussian(sigma=0.1,relative=abs)[include=layers.1.*;exclude=]", 0.05)):
        row = standard_critical.loc[(strategy, criterion)]
        assert row["status"] in (INTERPOLATED, BRACKETED)
        assert abs(math.log10(row["f_star"] / planted)) < 0.15  # seed noise sd 0.15 decades / sqrt(12)
        assert row["f_star_lo"] <= row["f_star"] <= row["f_star_hi"]
        assert row["seeds_crossed"] == 12


def test_deterministic_strategy_gives_a_point_without_interval(standard_critical):
    row = standard_critical.loc[("magnitude(then=zero)", "top1_agreement<0.5")]
    assert row["n_seeds"] == 1 and math.isnan(row["f_star_lo"])
    assert abs(math.log10(row["f_star"] / 0.001)) < 0.02
    assert row["logistic_status"].startswith("not fitted: a single trial")


def test_unreached_threshold_is_reported_as_such(standard_critical):
    row = standard_critical.loc[("scale(factor=0.9)", "top1_agreement<0.5")]
    assert row["status"] == NOT_REACHED and row["f_star"] == math.inf and row["seeds_crossed"] == 0
    assert describe_f_star(row) == f"not reached (> {100 * LOG_FRACTIONS[-1]:.3g}%, the largest swept)"


def test_destroyed_outputs_cross_kl_and_nll_thresholds(standard_critical):
    """bitflip: NaN KL/NLL above 0.4% must count as 'past the threshold', never as missing."""
    for criterion in ("mean_kl>0.5", "mean_nll>x1.5"):
        row = standard_critical.loc[("bitflip(bits=any)", criterion)]
        assert row["seeds_crossed"] == 12
        assert row["f_star"] <= 0.0057  # crossed by the first destroyed fraction at the latest


def test_relative_thresholds_use_the_baseline(standard_critical):
    assert standard_critical.loc[("zero", "mean_nll>x1.5"), "threshold"] == pytest.approx(1.5 * 1.4)
    assert standard_critical.loc[("zero", "accuracy<-10pt"), "threshold"] == pytest.approx(0.6 - 0.1)


def synthetic_cell(replication: int, n_seeds: int = 20, f_star: float = 0.01, spread: float = 0.15,
                   fractions=LOG_FRACTIONS, positions: int = 4000) -> pd.DataFrame:
    """One (model, strategy) of trials: per-seed log10 f* ~ N(log10 f_star, spread)."""
    rng = np.random.default_rng([99, replication])
    seed_f_star = 10 ** (math.log10(f_star) + spread * rng.standard_normal(n_seeds))
    rows = []
    for seed_idx in range(n_seeds):
        for amount_idx, fraction in enumerate(fractions):
            agreement = 1.0 / (1.0 + (fraction / seed_f_star[seed_idx]) ** 2)
            rows.append(dict(trial=len(rows), seed_idx=seed_idx, fraction_idx=amount_idx,
                             fraction=fraction,
                             top1_agreement=rng.binomial(positions, agreement) / positions))
    return pd.DataFrame(rows)


def test_f_star_interval_covers_the_planted_value_at_the_nominal_rate():
    replications = 200
    hits = 0
    for replication in range(replications):
        row = critical_fraction(synthetic_cell(replication), AGREEMENT_BELOW_HALF, 0.5, FAST,
                                ("m", "s", replication))
        hits += row["f_star_lo"] <= 0.01 <= row["f_star_hi"]
    # nominal 0.95; binomial SE over 200 replications is 0.015
    assert 0.90 <= hits / replications <= 0.99


def test_logistic_fit_recovers_the_midpoint_when_seeds_overlap():
    fine = [float(f) for f in 10 ** np.arange(-3.0, -0.99, 0.05)]
    cell = synthetic_cell(1, n_seeds=30, spread=0.25, fractions=fine)
    row = critical_fraction(cell, AGREEMENT_BELOW_HALF, 0.5, FAST, ("m", "s"))
    assert row["logistic_status"] == "converged"
    assert row["logistic_lo"] <= row["logistic_f50"] <= row["logistic_hi"]
    assert abs(math.log10(row["logistic_f50"] / 0.01)) < 0.15


def test_logistic_fit_reports_separation_instead_of_a_number():
    x = np.log10([1e-3, 1e-3, 1e-2, 1e-2])
    fit = fit_logistic(x, np.array([False, False, True, True]), 0.95)
    assert not fit.converged and "complete separation" in fit.status and math.isnan(fit.log_f50)
    fit = fit_logistic(x, np.array([False, False, False, False]), 0.95)
    assert not fit.converged and "same side" in fit.status


@pytest.mark.parametrize("text,criterion", [
    ("top1_agreement<0.5", Criterion("top1_agreement", "below", 0.5)),
    ("mean_kl > 2", Criterion("mean_kl", "above", 2.0)),
    ("mean_nll>x1.5", Criterion("mean_nll", "above", 1.5, "factor")),
    ("accuracy<-10pt", Criterion("accuracy", "below", -10.0, "points")),
])
def test_criterion_specs_parse_and_round_trip(text, criterion):
    assert parse_criterion(text) == criterion
    assert parse_criterion(criterion.spec) == criterion


@pytest.mark.parametrize("text,message", [
    ("top1_agreement=0.5", "expected METRIC<VALUE"),
    ("speed<3", "unknown metric 'speed'"),
    ("mean_kl>x2", "cannot be relative to the baseline"),
    ("mean_nll<-5pt", "applies to rates"),
])
def test_bad_criterion_specs_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        parse_criterion(text)


def test_describe_states_censoring_in_the_interval():
    row = {"status": INTERPOLATED, "f_star": 0.002, "f_star_lo": 0.0, "f_star_hi": math.inf,
           "swept_min": 1e-4, "swept_max": 0.5}
    assert describe_f_star(row) == "0.2% [≤ 0.01%, > 50%]"
    row.update(status=BELOW_RANGE, f_star=0.0, f_star_lo=0.0, f_star_hi=2e-4)
    assert describe_f_star(row) == "≤ 0.01% (smallest swept) [≤ 0.01%, 0.02%]"
    row.update(f_star_hi=0.0)  # every resample at or below the smallest fraction: no interval
    assert describe_f_star(row) == "≤ 0.01% (smallest swept)"


def test_the_swept_fractions_around_a_crossing_are_reported():
    x = np.log10([1e-4, 1e-3, 1e-2, 1e-1])
    assert crossing_bracket(x, np.array([0.9, np.nan, 0.3, 0.1]), AGREEMENT_BELOW_HALF, 0.5) == \
        pytest.approx((1e-4, 1e-2))  # the missing point is skipped
    low, high = crossing_bracket(x, np.array([0.4, 0.3, 0.2, 0.1]), AGREEMENT_BELOW_HALF, 0.5)
    assert math.isnan(low) and high == pytest.approx(1e-4)
    low, high = crossing_bracket(x, np.array([0.9, 0.8, 0.7, 0.6]), AGREEMENT_BELOW_HALF, 0.5)
    assert low == pytest.approx(0.1) and math.isnan(high)


def test_f_star_rows_carry_the_bracket_of_the_median_curve(standard_critical):
    row = standard_critical.loc[("zero", "top1_agreement<0.5")]
    i = min(range(len(LOG_FRACTIONS)), key=lambda j: abs(LOG_FRACTIONS[j] - row["bracket_lo"]))
    assert (row["bracket_lo"], row["bracket_hi"]) == pytest.approx((LOG_FRACTIONS[i], LOG_FRACTIONS[i + 1]))
    assert row["bracket_lo"] < row["f_star"] <= row["bracket_hi"]


def test_probe_columns_take_thresholds_relative_to_their_baseline():
    criterion = parse_criterion("probe_Trig_1_rate<x0.5")
    assert criterion == Criterion("probe_Trig_1_rate", "below", 0.5, "factor")
    baseline = pd.DataFrame({"probe_Trig_1_rate": [0.8]}, index=["m"])
    assert criterion.threshold(baseline, "m") == pytest.approx(0.4)
    assert math.isnan(Criterion("probe_other_rate", "below", 0.5, "factor").threshold(baseline, "m"))
    with pytest.raises(ValueError, match="cannot be relative"):
        Criterion("mean_kl", "above", 2.0, "factor")
