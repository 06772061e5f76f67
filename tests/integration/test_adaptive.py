"""Adaptive f* search ([sweep] adaptive): every search ends in a bracket its own rows prove, the
trials are the rows a grid of the same fractions holds, any rank count and a resumed run give the
same rows, and the searches take a fraction of a grid's trials."""
import math
import os
import signal
import sys

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import write_job
from resume_helpers import (INCOMPLETE, assert_same_rows, journal_trials, read_trials, start_run,
                            wait_for_trials)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))
from fracsweep_analysis.critical import ADAPTIVE, critical_fractions  # noqa: E402
from fracsweep_analysis.load import load_results  # noqa: E402

CRITERIA = {"top1_agreement<0.5": ("top1_agreement", np.less, 0.5),
            "greedy_match<8": ("greedy_match", np.less, 8)}
SMALLEST, LARGEST, WIDTH = 1e-5, 1.0, 0.1


def adaptive_job(directory, shared, name="adaptive", seeds="0-5", extra=""):
    return write_job(directory, shared, name=name, seeds=f"seeds = {seeds}", counts="",
                     fractions=f"fractions_log = {SMALLEST} {LARGEST} 1\n"
                               f"adaptive = {' '.join(CRITERIA)}\nadaptive_width = {WIDTH}{extra}",
                     strategies="strategy = zero\nstrategy = bitflip bits=any", record_sites="")


def holds(criterion, value):
    column, compare, threshold = CRITERIA[criterion]
    return (not math.isfinite(value)) or bool(compare(value, threshold))


def searches(path):
    with h5py.File(path, "r") as f:
        group = f["adaptive"]
        table = {name: group[name][()] for name in group}
        for name in ("criterion", "outcome"):
            table[name] = [v.decode() if isinstance(v, bytes) else v for v in table[name]]
        return table, dict(group.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_dir, run_fracsweep):
    directory = tmp_path_factory.mktemp("adaptive")
    job = adaptive_job(directory, shared_dir)
    out = directory / "adaptive.h5"
    result = run_fracsweep(["run", job, "--out", out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    return job, out, result


def test_every_search_ends_in_a_bracket_its_rows_prove(reference):
    _, out, result = reference
    table, attrs = searches(out)
    assert attrs["criteria"] == " ".join(CRITERIA) and attrs["width"] == WIDTH
    rows = read_trials(out)
    by_key = {(s, seed, f): i for i, (s, seed, f) in
              enumerate(zip(rows["strategy_idx"], rows["seed_idx"], rows["fraction"]))}
    with h5py.File(out, "r") as f:
        fractions = f["grid/fraction"][()]
    assert fractions[0] == SMALLEST and fractions[-1] == LARGEST
    assert np.all(fractions[1:] / fractions[:-1] <= 1 + WIDTH)

    def crossed(criterion, strategy, seed, fraction):
        i = by_key[(strategy, seed, fraction)]  # the row exists
        return holds(criterion, float(rows[CRITERIA[criterion][0]][i]))

    assert len(table["outcome"]) == 2 * 6 * len(CRITERIA)  # strategies x seeds x criteria
    outcomes = set()
    for i, outcome in enumerate(table["outcome"]):
        key = (table["criterion"][i], table["strategy_idx"][i], table["seed_idx"][i])
        below, above = table["fraction_below"][i], table["fraction_above"][i]
        outcomes.add(outcome)
        if outcome == "bracketed":
            assert above / below <= 1 + WIDTH + 1e-12
            assert not crossed(*key, below) and crossed(*key, above)
        elif outcome == "below_range":
            assert above == SMALLEST and crossed(*key, SMALLEST)
        elif outcome == "not_reached":
            assert below == LARGEST and not crossed(*key, LARGEST)
        else:
            pytest.fail(f"search {i} ended {outcome}")
    assert "bracketed" in outcomes
    assert "critical fraction f*" in result.stdout


def test_analysis_reads_the_searches_and_their_f_star(reference):
    _, out, _ = reference
    results = load_results(out)
    # Lattice points no search needed are not missing trials.
    assert results.is_complete and results.missing.count == 0 and not results.notes
    assert len(pd.read_hdf(out, "trials_table")) == len(results.trials)
    table, _ = searches(out)
    assert list(results.adaptive["outcome"]) == table["outcome"]
    critical = critical_fractions(results)
    assert set(critical["criterion"]) == set(CRITERIA)
    for criterion in CRITERIA:
        # zero: every seed bracketed; f* = median of the brackets' geometric midpoints (6 seeds:
        # the geometric mean of the middle two), computed here from the file's arrays.
        mine = [math.sqrt(b * a) for c, s, o, b, a in zip(
            table["criterion"], table["strategy_idx"], table["outcome"], table["fraction_below"],
            table["fraction_above"]) if c == criterion and s == 0 and o == "bracketed"]
        row = critical[(critical["criterion"] == criterion) & (critical["strategy"] == "zero")].iloc[0]
        assert len(mine) == 6
        ordered = sorted(mine)
        assert row["status"] == ADAPTIVE
        assert row["f_star"] == pytest.approx(math.sqrt(ordered[2] * ordered[3]), rel=1e-12)
        assert row["f_star_lo"] <= row["f_star"] <= row["f_star_hi"]


def test_trials_are_the_rows_a_grid_of_those_fractions_holds(reference, shared_dir, run_fracsweep,
                                                             tmp_path):
    _, out, _ = reference
    rows = read_trials(out)
    zero = rows["strategy_idx"] == 0
    picked = sorted(set(rows["fraction"][zero].tolist()))[:3]
    # The same fractions written out exactly (repr round-trips a double), as an ordinary grid.
    grid_job = write_job(tmp_path, shared_dir, name="grid", seeds="seeds = 0-5", counts="",
                         fractions="fractions = " + " ".join(repr(f) for f in picked),
                         strategies="strategy = zero\nstrategy = bitflip bits=any",
                         record_sites="")
    grid_out = tmp_path / "grid.h5"
    result = run_fracsweep(["run", grid_job, "--out", grid_out, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    grid = read_trials(grid_out)
    grid_index = {(s, seed, f): i for i, (s, seed, f) in
                  enumerate(zip(grid["strategy_idx"], grid["seed_idx"], grid["fraction"]))}
    compared = 0
    for i in range(len(rows["trial"])):
        key = (rows["strategy_idx"][i], rows["seed_idx"][i], rows["fraction"][i])
        if key not in grid_index:
            continue
        j = grid_index[key]
        for column in ("k", "k_changed", "mean_nll", "top1_agreement", "mean_kl", "greedy_match"):
            assert rows[column][i:i + 1].tobytes() == grid[column][j:j + 1].tobytes(), column
        compared += 1
    assert compared >= 6


def test_rank_count_does_not_change_the_rows(reference, run_fracsweep, tmp_path):
    job, out, _ = reference
    for ranks in (1, 3):
        other = tmp_path / f"ranks{ranks}.h5"
        result = run_fracsweep(["run", job, "--out", other, "--progress-interval", "0"], ranks=ranks)
        assert result.returncode == 0, result.stderr
        assert_same_rows(out, other)
        assert searches(other)[0]["trials"].tobytes() == searches(out)[0]["trials"].tobytes()


def test_stopped_search_resumes_to_the_same_rows(reference, fracsweep_bin, run_fracsweep, tmp_path):
    job, out, _ = reference
    stopped = tmp_path / "stopped.h5"
    process = start_run(fracsweep_bin, [job, "--out", stopped, "--progress-interval", "0",
                                        "--commit-every", "2"], ranks=2)
    assert wait_for_trials(f"{stopped}.journal", 20, process), process.communicate()[1]
    os.kill(process.pid, signal.SIGUSR1)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == INCOMPLETE, stderr
    done = journal_trials(f"{stopped}.journal")
    assert 20 <= done < len(read_trials(out)["trial"])
    assert "pending" in searches(stopped)[0]["outcome"]
    result = run_fracsweep(["run", job, "--out", stopped, "--progress-interval", "0"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert f"resuming {stopped}.journal with {done} trials done" in result.stderr
    assert_same_rows(out, stopped)


def test_searches_take_a_fraction_of_a_grid(reference):
    # A grid of 3 fractions per decade over the same range: 16 fractions per (strategy, seed),
    # which serves every criterion at once; each criterion's searches, here, a tenth as wide.
    _, out, _ = reference
    rows = read_trials(out)
    grid_trials = (5 * 3 + 1) * 6
    for strategy in (0, 1):
        per_criterion = np.sum(rows["strategy_idx"] == strategy) / len(CRITERIA)
        print(f"strategy {strategy}: {per_criterion:.1f} trials per criterion, "
              f"{per_criterion / grid_trials:.2f} of a 3-per-decade grid")
        assert per_criterion <= grid_trials / 3


@pytest.mark.parametrize("extra, flags, message", [
    ("", ["--shard", "1/2"], "an adaptive job cannot be sharded"),
    ("\nadaptive = no_such_metric<1", [], "'no_such_metric' is not a metric of this job"),
])
def test_bad_adaptive_runs_are_refused(shared_dir, run_fracsweep, tmp_path, extra, flags, message):
    job = adaptive_job(tmp_path, shared_dir, name="bad")
    if extra:
        job.write_text(job.read_text().replace(f"adaptive = {' '.join(CRITERIA)}", extra.strip()))
    out = tmp_path / "bad.h5"
    result = run_fracsweep(["run", job, "--out", out, *flags], ranks=2)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and str(job) in result.stderr
    assert not out.exists() and not os.path.exists(f"{out}.journal")


def test_merge_refuses_an_adaptive_file(reference, run_fracsweep, tmp_path):
    _, out, _ = reference
    merged = tmp_path / "merged.h5"
    result = run_fracsweep(["merge", "--out", merged, out], ranks=1)
    assert result.returncode == 2, result.stderr
    assert "holds an adaptive search" in result.stderr and str(out) in result.stderr
    assert not merged.exists()
