"""Loader: schema checks, tidy table, xarray view, partial files, clear errors."""
import math

import h5py
import numpy as np
import pytest
import xarray as xr

from conftest import behaviour_sweep, standard_sweep
from fracsweep_analysis.load import ResultsFileError, fraction_label, load_results
from synthetic_results import StrategyDef, SyntheticSweep, planted_row


def test_complete_file_gives_one_row_per_grid_trial(standard_file):
    sweep = standard_sweep()
    results = load_results(standard_file)
    n_random = sum(not s.deterministic for s in sweep.strategies)
    n_deterministic = len(sweep.strategies) - n_random
    expected = len(sweep.fractions) * (n_random * len(sweep.seeds) + n_deterministic)
    assert len(results.trials) == expected == results.missing.n_expected
    assert results.is_complete and results.missing.count == 0
    assert results.trials["trial"].tolist() == list(range(expected))
    magnitude = results.trials[results.trials["strategy"] == "magnitude(then=zero)"]
    assert len(magnitude) == len(sweep.fractions) and set(magnitude["seed"]) == {sweep.seeds[0]}


def test_rows_carry_readable_labels_and_the_written_values(standard_file):
    sweep = standard_sweep()
    results = load_results(standard_file)
    row = results.trials.set_index("trial").loc[sweep.grid_trials()[40][0]]
    _, model_idx, strategy_idx, amount_idx, seed_idx = sweep.grid_trials()[40]
    written = planted_row(sweep, model_idx, strategy_idx, amount_idx, seed_idx)
    assert row["model"] == "tiny"
    assert row["strategy"] == sweep.strategies[strategy_idx].label
    assert row["strategy_scope"] == sweep.strategies[strategy_idx].scope
    assert row["amount"] == fraction_label(sweep.fractions[amount_idx])
    assert row["seed"] == sweep.seeds[seed_idx]
    for column in ("k", "n_scope", "top1_agreement", "mean_nll", "mean_kl", "accuracy", "greedy_match"):
        assert row[column] == written[column]
    assert str(row["status"]) == "ok"


def test_fraction_labels_are_percentages():
    assert fraction_label(0.001) == "0.1%"
    assert fraction_label(0.25) == "25%"
    assert fraction_label(10 ** -4.75) == "0.00178%"


def test_nonfinite_trials_keep_nan_metrics_and_status(standard_file):
    trials = load_results(standard_file).trials
    destroyed = trials[(trials["strategy"] == "bitflip(bits=any)") & (trials["fraction"] > 0.004)]
    assert len(destroyed) > 0
    assert destroyed["mean_nll"].isna().all() and destroyed["mean_kl"].isna().all()
    assert (destroyed["status"].astype(str) == "nonfinite_outputs").all()
    assert (destroyed["nonfinite_positions"] == destroyed["positions"]).all()


def test_xarray_dataset_has_the_four_axes(standard_file):
    sweep = standard_sweep()
    results = load_results(standard_file)
    dataset = results.to_xarray()
    assert dict(dataset.sizes) == {"model": 1, "strategy": len(sweep.strategies),
                                   "fraction": len(sweep.fractions), "seed": len(sweep.seeds)}
    assert list(dataset["strategy"].values) == [s.label for s in sweep.strategies]
    cell = dataset["top1_agreement"].sel(model="tiny", strategy="zero", fraction=sweep.fractions[8],
                                         seed=sweep.seeds[3])
    trials = results.trials
    expected = trials[(trials["strategy"] == "zero") & (trials["fraction_idx"] == 8)
                      & (trials["seed_idx"] == 3)]["top1_agreement"].item()
    assert float(cell) == expected
    magnitude = dataset.sel(strategy="magnitude(then=zero)")
    assert magnitude["in_grid"].sel(seed=sweep.seeds[0]).all()
    assert not magnitude["in_grid"].sel(seed=sweep.seeds[1]).any()
    assert np.isnan(magnitude["top1_agreement"].sel(seed=sweep.seeds[1])).all()
    assert int(dataset["present"].sum()) == len(trials)


def test_synthetic_trials_group_is_readable_by_h5netcdf(standard_file):
    """The builder follows the README: /trials opens with xarray's h5netcdf engine."""
    opened = xr.open_dataset(standard_file, group="trials", engine="h5netcdf")
    assert opened.sizes["trial"] == len(load_results(standard_file).trials)
    assert "top1_agreement" in opened


def test_count_entries_sit_at_their_effective_fraction(make_results):
    sweep = SyntheticSweep(strategies=[StrategyDef("zero", "zero")], fractions=[0.001, "count=8"],
                           seeds=[1, 2])
    results = load_results(make_results(sweep))
    counts = results.trials[results.trials["amount_label"] == "count=8"]
    assert (counts["k"] == 8).all()
    assert np.allclose(counts["fraction"], 8 / sweep.n_parameters)
    assert set(counts["amount"]) == {"8 sites"}
    assert math.isnan(results.grid.amounts.loc[1, "fraction"])


def test_partial_file_reports_how_many_and_where(make_results):
    sweep = standard_sweep()
    cells = sweep.grid_trials()
    omitted = {cells[i][0] for i in (5, 6, 300, 301, len(cells) - 1)}
    results = load_results(make_results(standard_sweep(omit_trials=omitted, complete=False)))
    assert not results.is_complete
    assert results.missing.count == 5
    assert set(results.missing.trials["trial"]) == omitted
    last = results.missing.trials.set_index("trial").loc[cells[-1][0]]
    assert last["strategy"] == sweep.strategies[cells[-1][2]].label
    assert last["seed"] == sweep.seeds[cells[-1][4]]
    assert last["amount"] == fraction_label(sweep.fractions[cells[-1][3]])
    summary = results.missing.summary()
    assert summary.startswith(f"5 of {len(cells)} grid trials missing")
    assert "zero / 0.01%: seeds 105, 106" in summary
    by_cell = results.missing.by_cell()
    assert by_cell["n_missing"].sum() == 5
    assert len(results.trials) == len(cells) - 5
    dataset = results.to_xarray()
    assert int(dataset["present"].sum()) == len(cells) - 5
    assert int(dataset["in_grid"].sum()) == len(cells)


def test_interrupted_write_uses_the_complete_rows_and_says_so(make_results):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        wall = h5["trials/wall_s"][()]
        del h5["trials/wall_s"]
        h5["trials"].create_dataset("wall_s", data=wall[:-3])
    results = load_results(path)
    assert len(results.trials) == len(wall) - 3
    assert any("unequal lengths" in note for note in results.notes)
    assert results.missing.count == 3


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsFileError, match="no such file"):
        load_results(tmp_path / "absent.h5")


def test_non_hdf5_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5 at all\n")
    with pytest.raises(ResultsFileError, match="not an HDF5 file"):
        load_results(path)


def test_truncated_hdf5_is_a_clear_error(standard_file, tmp_path):
    data = standard_file.read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ResultsFileError) as error:
        load_results(path)
    assert str(path) in str(error.value)


def test_foreign_hdf5_file_is_a_clear_error(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("images", data=np.zeros((4, 4)))
        h5.create_group("labels")
    with pytest.raises(ResultsFileError, match=r"not a fracsweep results file: the root attribute "
                                               r"'schema_version' is missing \(top level holds: images, labels\)"):
        load_results(path)


@pytest.mark.parametrize("version,message", [
    ("netcdf4", "not a fracsweep results file: schema_version is 'netcdf4'"),
    ("fracsweep-results/2", "schema_version is 'fracsweep-results/2'; this toolkit reads 'fracsweep-results/1' only"),
])
def test_wrong_schema_version_is_a_clear_error(make_results, version, message):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        h5.attrs["schema_version"] = version
    with pytest.raises(ResultsFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_results(path)


def test_missing_dataset_is_named(make_results):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        del h5["trials/top1_agreement"]
    with pytest.raises(ResultsFileError, match=r"dataset /trials/top1_agreement is missing"):
        load_results(path)


def test_indices_that_contradict_the_grid_order_are_rejected(make_results):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        h5["trials/strategy_idx"][7] = 3
    with pytest.raises(ResultsFileError, match=r"/trials/strategy_idx of trial 7 is 3, but the grid order"):
        load_results(path)


def test_grid_size_must_match_n_trials(make_results):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        h5.attrs["n_trials"] = np.int64(5)
    with pytest.raises(ResultsFileError, match=r"n_trials is 5 but the /grid axes enumerate"):
        load_results(path)


def test_label_columns_must_agree_with_indices(make_results):
    path = make_results()
    with h5py.File(path, "r+") as h5:
        labels = h5["trials/model"].asstr()[()]
        labels[2] = "other-model"
        del h5["trials/model"]
        h5["trials"].create_dataset("model", data=labels.astype(object), dtype=h5py.string_dtype())
    with pytest.raises(ResultsFileError, match=r"/trials/model of row 2 is 'other-model'"):
        load_results(path)


def test_probe_kinds_and_their_baselines_are_read(make_results):
    results = load_results(make_results(behaviour_sweep(), name="behaviour.h5"))
    assert results.grid.probe_kinds == ("trigger", "control")
    assert results.baseline.loc["tuned", "probe_trigger_rate"] == 1.0
    assert results.baseline.loc["base", "probe_trigger_logprob"] == -40.0
    assert results.columns.loc["probe_control_logprob", "units"] == "nats"
    assert results.columns.loc["probe_trigger_rate", "long_name"] == \
        "fraction of trigger probe prompts whose greedy continuation begins with the target"
    assert {"k_changed", "probe_trigger_rate", "probe_control_logprob"} <= set(results.trials.columns)
    assert {"probe_trigger_rate", "probe_control_logprob"} <= set(results.to_xarray().data_vars)
    no_op = results.trials[(results.trials["model"] == "tuned")
                           & (results.trials["strategy"] == "delta(from=tuned,order=random)")]
    assert (no_op["k_changed"] == 0).all() and (no_op["probe_trigger_rate"] == 1.0).all()


def test_a_probe_kind_without_its_baseline_is_noted(make_results):
    path = make_results(behaviour_sweep(), name="behaviour.h5")
    with h5py.File(path, "a") as h5:
        del h5["baseline/probe_control_rate"]
    results = load_results(path)
    assert "probe_control_rate" not in results.baseline.columns
    assert any("/baseline/probe_control_rate is missing" in note for note in results.notes)


def test_files_without_probes_have_no_probe_kinds(standard_file):
    results = load_results(standard_file)
    assert results.grid.probe_kinds == ()
    assert not any(name.startswith("probe_") for name in results.baseline.columns)
