"""Fine-tune deltas: revert / transplant direction, the fraction that must be kept, and whether
keeping 25% of the largest changes suffices, on planted answers."""
import math

import pytest

from conftest import (BASE, BEHAVIOUR_FRACTIONS, REVERT_LARGEST, REVERT_RANDOM, TRANSPLANT_LARGEST,
                      TRANSPLANT_RANDOM, TUNED, behaviour_sweep)
from fracsweep_analysis.behaviour import probe_curves, probe_kinds
from fracsweep_analysis.critical import INTERPOLATED
from fracsweep_analysis.delta import (REVERT, TRANSPLANT, delta_analysis, delta_strategies,
                                      delta_table, keep_check, keep_text, swept_points)
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import BootstrapSettings
from synthetic_results import write_results
from test_behaviour import log_interpolated_crossing

FAST = BootstrapSettings(resamples=500, seed=3)


def analysed(path, sweep):
    results = load_results(write_results(path, sweep))
    kinds = probe_kinds(results)
    delta = delta_analysis(results, kinds, FAST)
    return results, delta, keep_check(results, delta, probe_curves(results, kinds, FAST))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return analysed(tmp_path_factory.mktemp("delta") / "d.h5", behaviour_sweep())


def row_of(delta, model, strategy, kind="trigger"):
    rows = delta[(delta["model"] == model) & (delta["strategy"] == strategy) & (delta["kind"] == kind)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_delta_strategies_are_read_from_the_job_spec(planted):
    results, _, _ = planted
    strategies = delta_strategies(results).set_index("strategy")
    assert list(strategies.index) == [REVERT_RANDOM, REVERT_LARGEST, TRANSPLANT_RANDOM, TRANSPLANT_LARGEST]
    assert strategies.loc[REVERT_LARGEST, "donor"] == BASE and strategies.loc[REVERT_LARGEST, "order"] == "largest"
    assert strategies.loc[TRANSPLANT_RANDOM, "donor"] == TUNED and not strategies.loc[TRANSPLANT_RANDOM, "deterministic"]


def test_direction_follows_which_checkpoint_has_the_behaviour(planted):
    _, delta, _ = planted
    # a delta toward the model itself is not a pair: four strategies x one other model x two kinds
    assert len(delta) == 8
    for strategy in (REVERT_RANDOM, REVERT_LARGEST):
        row = row_of(delta, TUNED, strategy)
        assert (row["direction"], row["tuned"], row["tuned_rate"], row["other_rate"]) == (REVERT, TUNED, 1.0, 0.0)
    for strategy in (TRANSPLANT_RANDOM, TRANSPLANT_LARGEST):
        row = row_of(delta, BASE, strategy)
        assert (row["direction"], row["tuned"]) == (TRANSPLANT, TUNED)
    control = delta[delta["kind"] == "control"]
    assert (control["direction"] == "").all()
    assert control["note"].str.contains("baseline rates are equal").all()
    assert (delta["changed_at_full"] == 1.0).all()


def test_revert_largest_keeps_one_minus_the_planted_crossing(planted):
    _, delta, _ = planted
    row = row_of(delta, TUNED, REVERT_LARGEST)
    expected, (before, after) = log_interpolated_crossing(lambda f: 1.0 / (1.0 + (f / 0.2) ** 2), 0.5)
    assert row["crossing_status"] == INTERPOLATED
    assert row["crossing_f_star"] == pytest.approx(expected, rel=1e-9)
    assert row["keep"] == pytest.approx(1.0 - expected, rel=1e-9)
    assert (row["keep_bracket_present"], row["keep_bracket_absent"]) == pytest.approx((1.0 - before, 1.0 - after))
    assert math.isnan(row["keep_lo"])  # deterministic: one trial per fraction
    assert keep_text(row) == (f"more than {100 * (1 - expected):.3g}%; absent with {100 * (1 - after):.3g}% kept, "
                              f"present with {100 * (1 - before):.3g}% kept")


def test_transplant_largest_must_keep_the_planted_crossing(planted):
    _, delta, _ = planted
    row = row_of(delta, BASE, TRANSPLANT_LARGEST)
    expected, bracket = log_interpolated_crossing(lambda f: (f / 0.13) ** 2 / (1.0 + (f / 0.13) ** 2), 0.5)
    assert row["crossing_f_star"] == pytest.approx(expected, rel=1e-9) and row["keep"] == row["crossing_f_star"]
    assert (row["keep_bracket_absent"], row["keep_bracket_present"]) == pytest.approx(bracket)
    assert keep_text(row).startswith(f"at least {100 * expected:.3g}%; absent with 10% kept")


def test_random_orders_recover_the_planted_crossing_with_an_interval(planted):
    _, delta, _ = planted
    for model, strategy, planted_f in ((TUNED, REVERT_RANDOM, 0.5), (BASE, TRANSPLANT_RANDOM, 0.4)):
        row = row_of(delta, model, strategy)
        assert abs(math.log10(row["crossing_f_star"] / planted_f)) < 0.05  # seed sd 0.05 decades
        assert row["keep_lo"] <= row["keep"] <= row["keep_hi"]
    revert = row_of(delta, TUNED, REVERT_RANDOM)
    assert revert["keep_lo"] == pytest.approx(1.0 - revert["crossing_f_star_hi"])


def test_swept_points_bracket_an_absent_fraction():
    class Grid:  # the two attributes swept_points reads
        pass
    import pandas as pd
    results = Grid()
    results.grid = Grid()
    results.grid.amounts = pd.DataFrame({"fraction": [0.1, 0.178, 0.316, float("nan")],
                                         "is_count": [False, False, False, True]})
    assert swept_points(results, 0.25) == ([(1, 0.178), (2, 0.316)], False)
    assert swept_points(results, 0.178) == ([(1, 0.178)], True)
    assert swept_points(results, 0.5) == ([(2, 0.316)], False)


def test_keeping_the_largest_quarter_suffices_when_planted_below_the_bracket(planted):
    """Transplant largest appears at 13%: at 17.8% (the swept point below 25%) the rate is
    (1.78/1.3)^2 / (1 + (1.78/1.3)^2), above half of the tuned rate: yes."""
    _, _, keep = planted
    largest = keep[keep["order"] == "largest"].iloc[0]
    assert largest["verdict"] == "yes"
    (low, mean_low, *_), (high, mean_high, *_) = largest["points"]
    assert (low, high) == pytest.approx((BEHAVIOUR_FRACTIONS[13], BEHAVIOUR_FRACTIONS[14]))
    r = (low / 0.13) ** 2
    assert mean_low == pytest.approx(r / (1 + r), rel=1e-12)
    assert "suffices (25% is not swept; the nearest swept fractions 17.8% and 31.6% bracket it)" in largest["answer"]
    assert f"rate {mean_low:.3g} (one trial) at 17.8%" in largest["answer"]
    random = keep[keep["order"] == "random"].iloc[0]
    assert random["verdict"] == "no"  # planted at 40%: absent even at 31.6%
    assert "does not suffice" in random["answer"] and "(mean of 10 seeds)" in random["answer"]


@pytest.mark.parametrize("f_b, fractions, verdict", [
    (0.25, BEHAVIOUR_FRACTIONS, "not determined by the grid"),   # crosses between 17.8% and 31.6%
    (0.5, BEHAVIOUR_FRACTIONS, "no"),                            # absent at both
    (0.2, [0.01, 0.1, 0.25, 1.0], "yes"),                        # 25% swept: 0.61 > 0.5
    (0.3, [0.01, 0.1, 0.25, 1.0], "no"),                         # 25% swept: 0.41 < 0.5
])
def test_keep_verdicts(tmp_path, f_b, fractions, verdict):
    _, _, keep = analysed(tmp_path / "k.h5", behaviour_sweep(transplant_largest_f_b=f_b, fractions=fractions))
    largest = keep[keep["order"] == "largest"].iloc[0]
    assert largest["verdict"] == verdict
    assert ("is not swept" in largest["answer"]) == (0.25 not in fractions)


def test_delta_table_reads_as_revert_and_transplant(planted):
    _, delta, _ = planted
    table = delta_table(delta)
    assert len(table) == 4
    assert set(table["direction"]) == {"revert tuned toward base", "transplant tuned's fine-tune onto base"}
    parts = dict(zip(table["strategy"], table["part kept"]))
    assert parts[REVERT_LARGEST] == "the smallest changes" and parts[TRANSPLANT_LARGEST] == "the largest changes"


def test_no_delta_strategies_no_rows(standard_file):
    results = load_results(standard_file)
    assert delta_strategies(results).empty
    assert delta_analysis(results, probe_kinds(results)).empty
