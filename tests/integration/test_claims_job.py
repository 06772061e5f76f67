"""The shipped claims job, as a user runs it: `mpirun -np 2 fracsweep run
jobs/stories260K-claims.ini`, then the file in h5py, xarray and pandas, checked against the
independent reference values, and the analysis report built from it."""
import json
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import SOURCE_DIR


@pytest.fixture(scope="module")
def claims(tmp_path_factory, shared_dir, run_fracsweep):
    out = tmp_path_factory.mktemp("claims") / "claims.h5"
    result = run_fracsweep(["run", SOURCE_DIR / "jobs/stories260K-claims.ini", "--out", out,
                            "--progress-interval", "10"], ranks=2, timeout=1200)
    assert result.returncode == 0, result.stderr
    return out, result


def test_file_is_complete_and_readable(claims):
    path, result = claims
    table = pd.read_hdf(path, "trials_table")
    dataset = xr.open_dataset(path, group="trials", engine="h5netcdf")
    assert len(table) == dataset.sizes["trial"] == 1395
    assert list(table["trial"]) == list(range(1395))
    with h5py.File(path, "r") as f:
        assert int(f.attrs["n_trials_done"]) == 1395 and int(f.attrs["mpi_size"]) == 2
        assert len(f["grid/strategy"]) == 12 and len(f["grid/fraction"]) == 15
    assert "top-1 agreement with the unperturbed model" in result.stdout


def test_numbers_match_the_reference(claims, shared_dir):
    path, _ = claims
    expected = json.loads((shared_dir / "fixtures/stories260K/expected.json").read_text())
    table = pd.read_hdf(path, "trials_table")
    table["strategy"] = table["strategy"].map(lambda s: s.decode() if isinstance(s, bytes) else s)
    with h5py.File(path, "r") as f:
        assert abs(f["baseline/mean_nll"][0] / expected["baseline"]["mean_nll"] - 1) < 1e-4
    at_01pct = table[np.isclose(table["fraction"], 1e-3)]
    # The 260 largest |w| zeroed (0.1% of all parameters): a deterministic oracle.
    oracle = expected["targeted_oracles"]["zero_top0.1pct_all"]
    magnitude = at_01pct[at_01pct["strategy"] == "magnitude(then=zero)"].iloc[0]
    assert magnitude["k"] == oracle["sites"] == 260
    assert abs(magnitude["top1_agreement"] - oracle["top1_agreement"]) <= 1e-3 * oracle["top1_agreement"] + 1e-9
    assert abs(magnitude["mean_nll"] / oracle["mean_nll"] - 1) < 1e-3
    # Random zeroing at 0.1%: the median over 10 seeds inside the reference's 20-seed band.
    band = expected["random_strategy_bands"]["cases"]["zero_random_0.001"]
    zero = at_01pct[at_01pct["strategy"] == "zero"]
    assert len(zero) == 10
    for metric in ("mean_nll", "top1_agreement", "mean_kl"):
        median = float(np.median(zero[metric]))
        assert band[metric]["min"] <= median <= band[metric]["max"], (metric, median, band[metric])


def test_analysis_report(claims, tmp_path):
    path, _ = claims
    out = tmp_path / "report"
    result = subprocess.run(["/usr/bin/python3", SOURCE_DIR / "analysis/bin/fracsweep-report", path,
                             "-o", out, "--resamples", "300", "--formats", "png"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "stories260K" in report and "magnitude(then=zero)" in report
    figures = list((out / "figures").glob("*.png"))
    assert figures and all(f.stat().st_size > 10_000 for f in figures)
