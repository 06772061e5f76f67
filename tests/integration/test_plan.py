"""`fracsweep plan`'s estimate (app/plan_estimate.hpp): what it runs to make one (a bounded
sample: at most three trials per model, a greedy continuation cut to a few tokens) and how close
it comes to a real run of the same job at 1 rank (its trials' wall_s summed; its baseline)."""
import re

import h5py
import pytest

from conftest import SOURCE_DIR, write_job

# Generous: plan and run share a machine with other work, and plan times three trials.
FACTOR = 3.0


def claims_variant(tmp_path, shared_dir, seeds):
    """jobs/stories260K-claims.ini with fewer seeds (315 trials at seeds 0-1)."""
    text = (SOURCE_DIR / "jobs/stories260K-claims.ini").read_text()
    text = text.replace("../../shared", str(shared_dir))
    text, replaced = re.subn(r"^seeds = .*$", f"seeds = {seeds}", text, flags=re.M)
    assert replaced == 1
    path = tmp_path / "claims-variant.ini"
    path.write_text(text)
    return path


def trial_seconds(plan_stdout):
    match = re.search(r"^estimate: ([\d.]+) trial-seconds in all", plan_stdout, re.M)
    assert match, plan_stdout
    return float(match.group(1))


def test_plan_times_three_trials_per_model_and_a_few_greedy_tokens(tmp_path, shared_dir, run_fracsweep):
    model = (f"{shared_dir}/models/stories260K/stories260K.bin "
             f"tokenizer={shared_dir}/models/stories260K/tok512.bin")
    job = write_job(
        tmp_path, shared_dir, model=f"model = first path={model}\nmodel = second path={model}",
        paragraphs="paragraphs = 4", greedy_tokens="greedy_tokens = 200",
        fractions="fractions = 0.0001 0.001 0.01 0.1", counts="", seeds="seeds = 0-9",
        strategies="strategy = zero\nstrategy = gaussian sigma=0.5\nstrategy = magnitude then=zero\n"
                   "strategy = taylor then=zero\nstrategy = bfa limit=4",
        record_sites="")
    result = run_fracsweep(["plan", job, "--ranks", "4", "--threads", "1"], timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Per model 2 random strategies x 4 fractions x 10 seeds + 3 deterministic x 4 fractions.
    assert re.findall(r"^model (\w+): 92 trials$", out, re.M) == [
        "first", "second"]
    # The largest k (0.1 of 260032), the smallest (0.0001), then taylor's smallest (its gradient
    # pass is the preparation measured); bfa's search is never run.
    assert re.findall(r"trials: timed (\d+) \(k = ([\d, ]+)\)", out) == [("3", "26003, 26, 26")] * 2
    assert out.count("one-time preparation (ranking, gradient) measured: ") == 2
    assert re.findall(r"measured: [\d.]+ s for (.*) \(paid", out) == ["taylor then=zero"] * 2
    assert out.count("not estimated: magnitude then=zero: its one-time ranking") == 2
    assert out.count("not estimated: bfa limit=4: its bit search") == 2
    # The baseline decodes 4 of the 200 tokens; the rest is estimated, not decoded.
    assert out.count("(forward pass + 4 of 200 greedy tokens) + ") == 2
    assert out.count("estimated for the other 196 tokens") == 2
    assert re.search(r"^wall estimate at 4 rank\(s\) x 1 thread\(s\): ~.* \(an estimate from 6 "
                     r"timed trial\(s\)", out, re.M), out


def test_plan_measures_a_continuation_shorter_than_its_sample(tmp_path, shared_dir, run_fracsweep):
    job = write_job(tmp_path, shared_dir, greedy_tokens="greedy_tokens = 3")
    result = run_fracsweep(["plan", job, "--ranks", "1", "--threads", "1"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"baseline [\d.]+ s measured \(forward pass \+ all 3 greedy tokens\)",
                     result.stdout), result.stdout


def test_plan_estimates_the_trial_seconds_of_a_real_run(tmp_path, shared_dir, run_fracsweep):
    job = claims_variant(tmp_path, shared_dir, "0-1")
    plan = run_fracsweep(["plan", job, "--ranks", "1", "--threads", "1"], timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert "trials: timed 3 (k = 65008, 3, 3)" in plan.stdout
    estimate = trial_seconds(plan.stdout)

    out = tmp_path / "claims-variant.h5"
    run = run_fracsweep(["run", job, "--out", out, "--threads", "1"], timeout=900)
    assert run.returncode == 0, run.stderr
    with h5py.File(out, "r") as results:
        wall = results["trials/wall_s"][:]
    assert len(wall) == 315
    actual = float(wall.sum())
    assert actual / FACTOR <= estimate <= actual * FACTOR, (estimate, actual)


def test_plan_estimates_the_baseline_of_a_long_continuation(tmp_path, shared_dir, run_fracsweep):
    """One paragraph and 500 greedy tokens: the baseline is mostly decoding, which plan does not
    do beyond 4 tokens; its estimate of the rest must bring it near the run's baseline phase."""
    job = write_job(tmp_path, shared_dir, paragraphs="paragraphs = 1",
                    greedy_tokens="greedy_tokens = 500", fractions="fractions = 0.001", counts="",
                    seeds="seeds = 0", strategies="strategy = zero", record_sites="")
    plan = run_fracsweep(["plan", job, "--ranks", "1", "--threads", "1"], timeout=300)
    assert plan.returncode == 0, plan.stderr
    match = re.search(r"^  baseline ([\d.]+) s: ([\d.]+) s measured \(forward pass \+ 4 of 500 greedy "
                      r"tokens\)", plan.stdout, re.M)
    assert match, plan.stdout
    estimate, measured = float(match.group(1)), float(match.group(2))

    run = run_fracsweep(["run", job, "--out", tmp_path / "long.h5", "--threads", "1"], timeout=300)
    assert run.returncode == 0, run.stderr
    actual = sum(float(seconds) for seconds in re.findall(
        r"model 'stories260K': (?:greedy continuation|baseline) in ([\d.]+) s", run.stderr))
    assert actual >= 0.05, "the continuation should dominate the baseline: " + run.stderr
    assert measured < actual / FACTOR  # what plan decoded is a small part of it
    assert actual / FACTOR <= estimate <= actual * FACTOR, (estimate, actual)


def test_plan_counts_an_adaptive_job_at_its_bound(tmp_path, shared_dir, run_fracsweep):
    job = write_job(tmp_path, shared_dir, counts="", seeds="seeds = 0-2", record_sites="",
                    fractions="fractions_log = 1e-5 1 1\nadaptive = top1_agreement<0.5",
                    strategies="strategy = zero")
    result = run_fracsweep(["plan", job, "--ranks", "1", "--threads", "1"], timeout=300)
    assert result.returncode == 0, result.stderr
    bound = re.search(r"^adaptive: the searches run at most (\d+) of these trials", result.stdout, re.M)
    counted = re.search(r"^model stories260K: at most (\d+) trials", result.stdout, re.M)
    assert bound and counted, result.stdout
    assert counted.group(1) == bound.group(1)
    mean = re.search(r"([\d.]+) ms mean", result.stdout)
    assert mean, result.stdout
    # The bound's trials at the grid's mean cost (the printed figures are rounded).
    assert trial_seconds(result.stdout) == pytest.approx(int(bound.group(1)) * float(mean.group(1)) / 1e3,
                                                         rel=0.02)
