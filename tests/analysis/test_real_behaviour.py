"""The behaviour part of the report on a real engine run: a reduced copy of
jobs/refusal-claims.ini (the stories260K refusal fine-tune and its base, every strategy of the
job, probes) under mpiexec, checked against ../shared/fixtures/stories260K/refusal-expected.json
and the engine's own guarantees (a delta toward the model itself changes nothing; a delta at
f = 1 with order=random reproduces the other checkpoint).

Skips with the reason when the engine or ../shared is absent; fails instead when CI=true.
"""
import json
import math
import subprocess
from pathlib import Path

import h5py
import pandas as pd
import pytest

from engine_runner import REFUSAL_TEST_SEEDS, require_engine, write_refusal_job
from fracsweep_analysis.behaviour import (BEHAVIOUR_FIRST, CAPABILITY_FIRST, NEITHER, NO_BEHAVIOUR,
                                          NO_CHANGE, TOGETHER, behaviour_vs_capability,
                                          probe_curves, probe_kinds)
from fracsweep_analysis.delta import REVERT, TRANSPLANT, delta_analysis, keep_check
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import BootstrapSettings
from synthetic_results import probe_columns

BIN = Path(__file__).resolve().parents[2] / "analysis" / "bin"
FAST = BootstrapSettings(resamples=300, seed=11)
N_SEEDS = 3
assert REFUSAL_TEST_SEEDS == f"0-{N_SEEDS - 1}"


@pytest.fixture(scope="module")
def engine():
    return require_engine()


@pytest.fixture(scope="module")
def expected(engine):
    return json.loads((engine.shared / "fixtures/stories260K/refusal-expected.json").read_text())


@pytest.fixture(scope="module")
def refusal_file(engine, tmp_path_factory):
    directory = tmp_path_factory.mktemp("refusal")
    return engine.run(write_refusal_job(directory, engine.shared), directory / "refusal.h5")


@pytest.fixture(scope="module")
def analysed(refusal_file):
    results = load_results(refusal_file)
    kinds = probe_kinds(results)
    curves = probe_curves(results, kinds, FAST)
    delta = delta_analysis(results, kinds, FAST)
    return results, kinds, curves, behaviour_vs_capability(results, kinds, FAST), delta, \
        keep_check(results, delta, curves)


def test_synthetic_probe_columns_are_the_engines(refusal_file):
    with h5py.File(refusal_file, "r") as h5:
        attrs = h5["trials"].attrs
        table = list(zip(*[[str(item) for item in attrs[key]] for key in
                           ("column_names", "column_types", "column_units", "column_long_names")]))
    probes = [row for row in table if row[0].startswith("probe_")]
    assert probes == [tuple(row) for row in probe_columns(("trigger", "control"))]


def test_baselines_are_the_fixtures(analysed, expected):
    results, kinds, *_ = analysed
    assert [kind.kind for kind in kinds] == ["trigger", "control"]
    for model in ("tuned", "base"):
        for kind in ("trigger", "control"):
            assert results.baseline.loc[model, f"probe_{kind}_rate"] == expected["refusal_rate"][kind][model]
        nll = expected["eval_nll"][model]
        assert results.baseline.loc[model, "mean_nll"] == pytest.approx(nll, rel=1e-4)


def test_probe_curves_at_full_delta_reach_the_other_checkpoint(analysed):
    """delta order=random at f = 1 makes the model the other checkpoint, bit for bit: its probe
    rate and log-prob are the other checkpoint's baseline values."""
    results, _, curves, *_ = analysed
    for model, strategy, other in (("tuned", "delta(from=base,order=random)", "base"),
                                   ("base", "delta(from=tuned,order=random)", "tuned")):
        at_full = curves[(curves["model"] == model) & (curves["strategy"] == strategy)
                         & (curves["fraction"] == 1.0)].set_index("metric")
        for metric in ("probe_trigger_rate", "probe_trigger_logprob", "probe_control_logprob"):
            assert at_full.loc[metric, "n"] == N_SEEDS
            assert at_full.loc[metric, "mean"] == pytest.approx(results.baseline.loc[other, metric], rel=1e-9)
            assert at_full.loc[metric, "mean_lo"] == pytest.approx(at_full.loc[metric, "mean_hi"], rel=1e-9)


def test_behaviour_vs_capability_on_the_real_pair(analysed):
    results, _, _, versus, *_ = analysed
    versus = versus.set_index(["model", "strategy", "kind"])
    strategies = list(results.grid.strategies["strategy"])
    assert len(versus) == 2 * len(strategies) * 2
    # the base model never refuses and no model refuses control prompts: nothing to lose
    for model, kind in (("base", "trigger"), ("base", "control"), ("tuned", "control")):
        assert (versus.xs((model, kind), level=("model", "kind"))["first"] == NO_BEHAVIOUR).all()
    tuned = versus.xs(("tuned", "trigger"), level=("model", "kind"))
    for strategy in ("delta(from=tuned,order=random)", "delta(from=tuned,order=largest)"):
        assert tuned.loc[strategy, "first"] == NO_CHANGE  # k_changed = 0: the engine's no-op
    compared = tuned.drop(["delta(from=tuned,order=random)", "delta(from=tuned,order=largest)"])
    assert set(compared["first"]) <= {BEHAVIOUR_FIRST, CAPABILITY_FIRST, TOGETHER, NEITHER}
    # reverting the whole fine-tune leaves the base model: the refusal is gone within the sweep
    for strategy in ("delta(from=base,order=random)", "delta(from=base,order=largest)"):
        assert compared.loc[strategy, "behaviour_status"] != "not reached within the swept range"
        assert compared.loc[strategy, "behaviour_f_star"] <= 1.0


def test_delta_directions_and_the_quarter_question(analysed):
    _, _, _, _, delta, keep = analysed
    trigger = delta[delta["kind"] == "trigger"].set_index(["model", "strategy"])
    assert set(trigger.loc["tuned"]["direction"]) == {REVERT}
    assert set(trigger.loc["base"]["direction"]) == {TRANSPLANT}
    assert (delta[delta["kind"] == "control"]["direction"] == "").all()
    assert (trigger["changed_at_full"] == 1.0).all()  # every value differs between the pair
    for model, strategy in trigger.index:
        row = trigger.loc[(model, strategy)]
        assert row["crossing_status"] != "not reached within the swept range", (model, strategy)
        assert 0.0 <= row["keep"] <= 1.0
    largest = keep[keep["order"] == "largest"].iloc[0]
    assert (largest["model"], largest["tuned"], largest["kind"]) == ("base", "tuned", "trigger")
    assert [point[0] for point in largest["points"]] == [0.2, 0.5]
    assert largest["verdict"] in ("yes", "no", "not determined by the grid")
    assert "the nearest swept fractions 20% and 50% bracket it" in largest["answer"]


def test_report_on_the_real_run(refusal_file, tmp_path):
    completed = subprocess.run([str(BIN / "fracsweep-report"), str(refusal_file), "-o", str(tmp_path / "report"),
                                "--resamples", "300", "--formats", "png", "-q"],
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr
    markdown = (tmp_path / "report/report.md").read_text()
    for heading in ("## Behaviour probes", "## Behaviour vs capability",
                    "## Fine-tune delta: how much must be kept",
                    "### Does keeping the 25% largest changes suffice?"):
        assert heading in markdown, heading
    assert "f = 25% is not a swept fraction; the nearest swept fractions on either side are 20% and 50%" in markdown
    assert "- Keeping the 25% largest changes of tuned's fine-tune (transplanted onto base), trigger probes: " in markdown
    versus = pd.read_csv(tmp_path / "report/tables/behaviour_vs_capability.csv")
    assert len(versus) == 2 * 10 * 2
    for model in ("tuned", "base"):
        assert (tmp_path / f"report/figures/behaviour-{model}.png").stat().st_size > 10_000
    assert not math.isnan(versus[versus["model"] == "tuned"]["capability_baseline"].iloc[0])
