"""The toolkit on results files the engine writes in this test run (jobs/stories260K-smoke.ini).

Skips with the reason when the engine or ../shared is absent; fails instead when CI=true.
"""
import collections
import html
import json
import math
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from engine_runner import SITES_JOB_SEED, SMOKE_JOB, require_engine, write_sites_job
from fracsweep_analysis.load import load_results
from fracsweep_analysis.sites import compare_with_record, trial_sites

BIN = Path(__file__).resolve().parents[2] / "analysis" / "bin"


@pytest.fixture(scope="module")
def engine():
    return require_engine()


@pytest.fixture(scope="module")
def smoke_file(engine, tmp_path_factory):
    return engine.run(SMOKE_JOB, tmp_path_factory.mktemp("engine") / "smoke.h5")


@pytest.fixture(scope="module")
def recorded_file(engine, tmp_path_factory):
    """Every trial of a job covering each strategy kind, with its sites recorded."""
    directory = tmp_path_factory.mktemp("sites")
    return engine.run(write_sites_job(directory, engine.shared), directory / "sites.h5")


def test_engine_file_is_complete_and_consistent(smoke_file):
    results = load_results(smoke_file)
    assert results.is_complete, results.missing.summary()
    assert results.provenance["n_trials_done"] == results.provenance["n_trials"] == len(results.trials)
    assert (results.trials["positions"] > 0).all()
    assert (results.trials["k"] <= results.trials["n_scope"]).all()
    dataset = results.to_xarray()
    assert tuple(dataset.sizes[d] for d in ("model", "strategy", "fraction", "seed")) == results.grid.shape
    assert int(dataset["present"].sum()) == len(results.trials)


def test_tensor_table_matches_the_reference_model(engine, smoke_file):
    results = load_results(smoke_file)
    for model_idx, tensors in results.tensors.groupby("model_idx"):
        ordered = tensors.sort_values("offset")
        ends = (ordered["offset"] + ordered["count"]).to_numpy()
        assert ordered["offset"].iloc[0] == 0 and (ordered["offset"].to_numpy()[1:] == ends[:-1]).all()
        assert ends[-1] == results.grid.models["model_n_parameters"].iloc[model_idx]
    expected = json.loads((engine.shared / "fixtures/stories260K/expected.json").read_text())["model"]
    stories = results.grid.models.index[results.grid.models["model_n_parameters"] == expected["n_parameters"]]
    for model_idx in stories:
        shapes = collections.Counter(results.tensors[results.tensors["model_idx"] == model_idx]["shape"])
        reference = collections.Counter()
        for name, shape in expected["tensors"].items():
            per_layer = name not in ("tok_embeddings", "rms_final")  # stacked over layers in expected.json
            reference["x".join(map(str, shape[1:] if per_layer else shape))] += shape[0] if per_layer else 1
        assert shapes == reference


def test_baseline_is_read_as_the_reference_computes_it(engine, smoke_file):
    results = load_results(smoke_file)
    expected = json.loads((engine.shared / "fixtures/stories260K/expected.json").read_text())["baseline"]
    for model, row in results.baseline.iterrows():
        assert math.isfinite(row["mean_nll"]) and row["mean_nll"] > 0
        assert math.exp(row["mean_nll"]) == pytest.approx(row["perplexity"], rel=1e-9)
        if row["positions"] == expected["tokens"]:  # the reference's 50-paragraph evaluation set
            assert row["mean_nll"] == pytest.approx(expected["mean_nll"], rel=1e-4)


def test_loader_agrees_with_pandas_and_h5netcdf_readers(smoke_file):
    results = load_results(smoke_file)
    table = pd.read_hdf(smoke_file, "trials_table")
    assert table["trial"].tolist() == results.trials["trial"].tolist()
    assert np.array_equal(table["top1_agreement"].to_numpy(), results.trials["top1_agreement"].to_numpy())
    trials = xr.open_dataset(smoke_file, group="trials", engine="h5netcdf")
    assert trials["trial"].values.tolist() == results.trials["trial"].tolist()
    assert np.array_equal(trials["mean_nll"].values, results.trials["mean_nll"].to_numpy(), equal_nan=True)


def test_report_on_the_engine_file(smoke_file, tmp_path):
    completed = subprocess.run([str(BIN / "fracsweep-report"), str(smoke_file), "-o", str(tmp_path / "report"),
                                "--resamples", "500"], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    report = (tmp_path / "report/report.html").read_text()
    results = load_results(smoke_file)
    for strategy in results.grid.strategies["strategy"]:
        assert html.escape(strategy) in report, strategy
    assert results.provenance["git_commit"] in report
    pngs = list((tmp_path / "report/figures").glob("*.png"))
    assert len(pngs) >= 2 * len(results.grid.models)
    for png in pngs:
        pixels = matplotlib.image.imread(png)
        assert (pixels[..., :3].min(axis=2) < 0.9).mean() > 0.03, png.name


def test_python_mirror_reproduces_the_engine_sites(recorded_file):
    """Sites of every random trial bit for bit; new values bit for bit where they follow from the
    old value alone; otherwise the mirror's draws must explain the engine's values."""
    results = load_results(recorded_file)
    assert results.provenance["job_seed"] == SITES_JOB_SEED
    random_trials = results.trials.loc[~results.trials["deterministic"], "trial"]
    assert set(random_trials) <= set(results.sites["trial"])
    values_checked = 0
    draws_checked = collections.Counter()  # tensors whose values the draws were fitted to
    for trial in random_trials:
        listing = trial_sites(results, int(trial))
        record = listing.recorded
        assert len(record) == listing.k == len(listing.sites), f"trial {trial}"
        assert listing.sites["offset"].tolist() == record["offset"].tolist(), f"trial {trial}"
        assert listing.sites["tensor"].tolist() == record["tensor"].tolist()
        assert listing.sites["index_in_tensor"].tolist() == record["index_in_tensor"].tolist()
        if "new_value" in listing.sites:
            mirror = listing.sites["new_value"].to_numpy(dtype=np.float32)
            engine_values = record["new_value"].to_numpy(dtype=np.float32)
            assert np.array_equal(mirror.view(np.uint32), engine_values.view(np.uint32)), \
                f"trial {trial} ({listing.strategy})"
            values_checked += 1
        else:
            draws_checked[listing.strategy] += assert_draws_explain_the_values(
                listing.sites, listing.recipe.draw_name, trial)
    assert values_checked >= 7 * 6  # strategies x (amounts x seeds)
    assert len(draws_checked) == 2 and min(draws_checked.values()) >= 3, draws_checked


def assert_draws_explain_the_values(sites: pd.DataFrame, draw: str, trial: int) -> int:
    """gaussian relative=std writes w + c * z and random-value writes a + b * u, with constants
    per tensor (sigma * std; min and max - min). Fitting those constants per tensor must leave
    only float32 rounding if the mirror's draws are the engine's; unrelated draws leave O(1).
    Returns the number of tensors checked (those with 3 sites or more)."""
    engine_values = sites["engine_new_value"].astype(np.float64)
    checked = 0
    for _, rows in sites.groupby("tensor"):
        if len(rows) < 3:
            continue
        x = rows[draw].to_numpy()
        if draw == "z":
            y = engine_values[rows.index].to_numpy() - rows["old_value"].astype(np.float64).to_numpy()
            design = x[:, None]  # y = c * z
        else:
            y = engine_values[rows.index].to_numpy()
            design = np.column_stack([np.ones_like(x), x])  # y = a + b * u
        coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
        residual = np.abs(design @ coefficients - y)
        scale = np.abs(engine_values[rows.index]).max() + np.abs(y).max()
        assert residual.max() <= 1e-6 * scale, f"trial {trial}: draws do not explain the values"
        checked += 1
    return checked


def test_sites_command_confirms_the_engine_record(recorded_file):
    results = load_results(recorded_file)
    bitflip_any = results.trials[results.trials["strategy"].str.startswith("bitflip(bits=any)")]
    trial = int(bitflip_any["trial"].iloc[-1])
    completed = subprocess.run([str(BIN / "fracsweep-sites"), str(recorded_file), str(trial)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"job_seed={SITES_JOB_SEED}|" in completed.stdout
    assert "the mirror matches the engine" in completed.stdout
    assert compare_with_record(trial_sites(results, trial)).sites_match
