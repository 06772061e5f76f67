"""Curves: bootstrap and Wilson intervals, their coverage, and how non-finite outcomes count."""
import math

import h5py
import numpy as np
import pytest

from conftest import standard_sweep
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import (BootstrapSettings, bootstrap_interval, summarise_curves,
                                      wilson_interval)

FAST = BootstrapSettings(resamples=1000, seed=11)


@pytest.mark.parametrize("successes,trials,low,high", [
    (8, 10, 0.4902, 0.9433),   # textbook Wilson 95% intervals (e.g. Newcombe 1998, Table I)
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_hand_values(successes, trials, low, high):
    result = wilson_interval(successes, trials, 0.95)
    assert result == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_covers_at_nominal_rate():
    rng = np.random.default_rng(3)
    p, n, replications = 0.3, 200, 4000
    hits = sum(low <= p <= high for low, high in
               (wilson_interval(s, n, 0.95) for s in rng.binomial(n, p, replications)))
    assert 0.935 <= hits / replications <= 0.965


@pytest.mark.parametrize("statistic", ["median", "mean"])
def test_bootstrap_intervals_cover_at_nominal_rate(statistic):
    """25 seeds of a normal outcome: the percentile interval covers the true centre ~95%."""
    replications, truth = 400, 3.0
    hits = 0
    for replication in range(replications):
        sample = np.random.default_rng([5, replication]).normal(truth, 1.0, 25)
        low, high = bootstrap_interval(sample, statistic, FAST, np.random.default_rng(replication))
        hits += low <= truth <= high
    # nominal 0.95; 400 replications give a binomial SE of 0.011
    assert 0.91 <= hits / replications <= 0.985


def test_bootstrap_is_reproducible_per_seed():
    sample = np.random.default_rng(0).normal(size=12)
    first = bootstrap_interval(sample, "mean", FAST, FAST.generator("m", "s", 3))
    again = bootstrap_interval(sample, "mean", FAST, FAST.generator("m", "s", 3))
    other = BootstrapSettings(resamples=1000, seed=12)
    assert first == again
    assert first != bootstrap_interval(sample, "mean", other, other.generator("m", "s", 3))


def test_single_trial_has_no_interval():
    assert all(math.isnan(v) for v in bootstrap_interval(np.array([0.4]), "mean", FAST,
                                                          np.random.default_rng(0)))


def test_bootstrap_interval_with_infinite_outcomes_stays_ordered():
    sample = np.array([1.0, 2.0, 3.0, math.inf, math.inf])
    low, high = bootstrap_interval(sample, "median", FAST, np.random.default_rng(1))
    assert 1.0 <= low <= 3.0 and high == math.inf


@pytest.fixture
def curves(standard_file):
    results = load_results(standard_file)
    return results, summarise_curves(results, settings=FAST)


def test_curve_centres_match_the_trials(curves):
    results, table = curves
    trials = results.trials
    cell = trials[(trials["strategy"] == "zero") & (trials["fraction_idx"] == 7)]
    row = table[(table["strategy"] == "zero") & (table["fraction_idx"] == 7)
                & (table["metric"] == "top1_agreement")].iloc[0]
    assert row["n"] == len(cell) == 12
    assert row["median"] == np.median(cell["top1_agreement"])
    assert row["mean"] == pytest.approx(np.mean(cell["top1_agreement"]))
    assert row["median_lo"] <= row["median"] <= row["median_hi"]
    assert row["min"] == cell["top1_agreement"].min() and row["max"] == cell["top1_agreement"].max()
    assert row["fraction"] == pytest.approx(cell["fraction"].iloc[0])


def test_pooled_wilson_uses_rounded_successes_over_all_tokens(curves):
    results, table = curves
    trials = results.trials
    cell = trials[(trials["strategy"] == "zero") & (trials["fraction_idx"] == 8)]
    row = table[(table["strategy"] == "zero") & (table["fraction_idx"] == 8)
                & (table["metric"] == "top1_agreement")].iloc[0]
    successes = np.round(cell["top1_agreement"] * cell["positions"]).sum()
    assert row["pooled_successes"] == successes
    assert row["pooled_positions"] == cell["positions"].sum()
    assert (row["wilson_lo"], row["wilson_hi"]) == pytest.approx(
        wilson_interval(successes, cell["positions"].sum(), 0.95))


def test_nonfinite_outcomes_count_as_worst_not_dropped(curves):
    """bitflip above 0.4% destroys the model in every seed: NLL/KL medians are +inf."""
    results, table = curves
    destroyed = table[(table["strategy"] == "bitflip(bits=any)") & (table["fraction"] > 0.004)]
    kl = destroyed[destroyed["metric"] == "mean_kl"]
    assert len(kl) > 0 and (kl["median"] == math.inf).all() and (kl["n_nonfinite"] == kl["n"]).all()
    agreement = destroyed[destroyed["metric"] == "top1_agreement"]
    assert (agreement["median"] == 0.0).all()


def test_minority_of_nonfinite_seeds_shifts_the_median(make_results):
    bitflip = 2
    path = make_results(standard_sweep(), "mixed.h5")
    with h5py.File(path, "r+") as h5:  # 5 of the 12 seeds at one fraction become non-finite
        strategy_idx = h5["trials/strategy_idx"][()]
        fraction_idx = h5["trials/fraction_idx"][()]
        seed_idx = h5["trials/seed_idx"][()]
        rows = np.flatnonzero((strategy_idx == bitflip) & (fraction_idx == 5) & (seed_idx < 5))
        kl = h5["trials/mean_kl"][()]
        finite_values = kl[(strategy_idx == bitflip) & (fraction_idx == 5) & (seed_idx >= 5)]
        kl[rows] = np.nan
        h5["trials/mean_kl"][...] = kl
    results = load_results(path)
    table = summarise_curves(results, ["mean_kl"], FAST)
    row = table[(table["strategy"] == "bitflip(bits=any)") & (table["fraction_idx"] == 5)].iloc[0]
    assert row["n"] == 12 and row["n_nonfinite"] == 5
    with_worst = np.concatenate([finite_values, np.full(5, np.inf)])
    assert row["median"] == np.median(with_worst)
    assert row["median"] > np.median(finite_values)  # dropping them would understate the damage
    assert row["mean"] == math.inf


def test_deterministic_strategy_has_no_seed_interval(curves):
    _, table = curves
    magnitude = table[table["strategy"] == "magnitude(then=zero)"]
    assert (magnitude["n"] == 1).all()
    assert magnitude["median_lo"].isna().all() and magnitude["mean_hi"].isna().all()


def test_missing_trials_are_counted_per_cell(make_results):
    sweep = standard_sweep()
    omitted = {trial for trial, _, strategy, amount, seed in sweep.grid_trials()
               if strategy == 0 and amount == 3 and seed in (0, 1, 2)}
    results = load_results(make_results(standard_sweep(omit_trials=omitted)))
    table = summarise_curves(results, ["top1_agreement"], FAST)
    row = table[(table["strategy"] == "zero") & (table["fraction_idx"] == 3)].iloc[0]
    assert row["n"] == 9 and row["n_missing"] == 3
