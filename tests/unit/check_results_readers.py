#!/usr/bin/env python3
"""Opens a fracsweep results file with the readers analysts use and checks it against the schema
(README.md, "Results file") and against expected values.

usage: check_results_readers.py RESULTS.h5 EXPECTED.json

EXPECTED.json: {"root": {attribute: value}, "grid" | "trials" | "baseline" | "tensors" |
"sites": {dataset: [values]}}; null stands for NaN. Without "sites" the file must have no
/sites group. Readers: h5py (every group), xarray with engine="h5netcdf" (groups grid, trials,
baseline, tensors, sites), PyTables and pandas.read_hdf ("trials_table").
Prints every failed check; exit status 0 only when all pass.
"""
import json
import math
import sys

import h5py
import numpy as np
import pandas as pd
import tables
import xarray as xr

STR = "str"  # variable-length UTF-8 in HDF5, Python str in every reader

# Schema: dataset -> (dtype, dimensions), in file order.
GRID = {
    "model": (STR, ("model",)),
    "model_path": (STR, ("model",)),
    "model_format": (STR, ("model",)),
    "model_n_parameters": ("int64", ("model",)),
    "strategy": (STR, ("strategy",)),
    "strategy_name": (STR, ("strategy",)),
    "strategy_scope": (STR, ("strategy",)),
    "strategy_spec": (STR, ("strategy",)),
    "strategy_deterministic": ("int8", ("strategy",)),
    "fraction": ("float64", ("fraction",)),
    "count": ("int64", ("fraction",)),
    "amount_label": (STR, ("fraction",)),
    "seed": ("int64", ("seed",)),
}
GRID_SCALES = ["model", "strategy", "fraction", "seed"]

TRIALS = {
    "trial": "int64",
    "model_idx": "int32",
    "strategy_idx": "int32",
    "fraction_idx": "int32",
    "seed_idx": "int32",
    "model": STR,
    "strategy": STR,
    "stored_dtype": STR,
    "fraction": "float64",
    "seed": "int64",
    "k": "int64",
    "k_changed": "int64",
    "n_scope": "int64",
    "positions": "int64",
    "nonfinite_positions": "int64",
    "mean_nll": "float64",
    "perplexity": "float64",
    "mean_nll_finite": "float64",
    "accuracy": "float64",
    "sdc_rate": "float64",
    "top1_agreement": "float64",
    "mean_kl": "float64",
    "max_kl": "float64",
    "mean_kl_finite": "float64",
    "greedy_match": "int64",
    "greedy_length": "int64",
    "wall_s": "float64",
    "rank": "int32",
    "status": "int32",
}
TRIAL_UNITS = {"mean_nll": "nats", "mean_nll_finite": "nats", "mean_kl": "nats",
               "max_kl": "nats", "mean_kl_finite": "nats", "wall_s": "s", "accuracy": "1", "sdc_rate": "1",
               "top1_agreement": "1", "perplexity": "1", "fraction": "1"}

BASELINE = {
    "model_index": ("int32", ("model_index",)),
    "model": (STR, ("model_index",)),
    "mean_nll": ("float64", ("model_index",)),
    "perplexity": ("float64", ("model_index",)),
    "accuracy": ("float64", ("model_index",)),
    "positions": ("int64", ("model_index",)),
    "nonfinite_positions": ("int64", ("model_index",)),
    "greedy_length": ("int64", ("model_index",)),
    "greedy_text": (STR, ("model_index",)),
    "greedy_position": ("int64", ("greedy_position",)),
    "greedy_ids": ("int32", ("model_index", "greedy_position")),
}
BASELINE_SCALES = ["model_index", "greedy_position"]

TENSORS = {
    "tensor": ("int64", ("tensor",)),
    "model_idx": ("int32", ("tensor",)),
    "name": (STR, ("tensor",)),
    "offset": ("int64", ("tensor",)),
    "count": ("int64", ("tensor",)),
    "shape": (STR, ("tensor",)),
    "dtype": (STR, ("tensor",)),
    "role": (STR, ("tensor",)),
}
SITES = {
    "site": ("int64", ("site",)),
    "trial": ("int64", ("site",)),
    "site_rank": ("int64", ("site",)),
    "offset": ("int64", ("site",)),
    "tensor": (STR, ("site",)),
    "index_in_tensor": ("int64", ("site",)),
    "old_value": ("float32", ("site",)),
    "new_value": ("float32", ("site",)),
}

ROOT_ATTRIBUTES = {
    "schema_version": STR, "software_version": STR, "git_commit": STR, "job_name": STR,
    "job_path": STR, "job_text": STR, "job_sha256": STR, "job_seed": "uint64",
    "command_line": STR, "schedule": STR, "mpi_size": "int32", "hostnames": STR,
    "blis_version": STR, "blis_kernels": STR, "blis_kernels_selected_by": STR,
    "blis_threads": "int32", "started_utc": STR, "finished_utc": STR, "n_trials": "int64",
    "n_trials_done": "int64", "shard_index": "int64", "shard_count": "int64",
    "resume_count": "int32", "sessions": STR, "site_recipe": STR,
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def same_values(actual, expected, dtype):
    """Exact equality of flat values; NaN (null in JSON) equals NaN."""
    if dtype == STR:
        return list(np.asarray(actual, dtype=object).ravel()) == list(expected)
    wanted = np.array([math.nan if v is None else v for v in expected], dtype=dtype)
    got = np.asarray(actual).ravel()
    return got.shape == wanted.shape and np.array_equal(got, wanted,
                                                         equal_nan=got.dtype.kind == "f")


def flatten_nested(values):
    """[[1, 2], [3, 4]] -> [1, 2, 3, 4] (JSON matrices)."""
    if values and isinstance(values[0], list):
        return [v for row in values for v in row]
    return values


def check_dtype(where, dtype, actual_dtype, sample):
    if dtype == STR:
        check(all(isinstance(v, str) for v in sample),
              f"{where}: expected str values, found {[type(v).__name__ for v in sample][:3]}")
    else:
        check(np.dtype(actual_dtype) == np.dtype(dtype),
              f"{where}: dtype {actual_dtype}, expected {dtype}")


# ---------------------------------------------------------------------------- h5py


def h5py_values(dataset):
    info = h5py.check_string_dtype(dataset.dtype)
    if info is not None:
        return list(dataset.asstr()[...].ravel())
    return dataset[...]


def check_h5py_group(f, group_name, schema, scales, expected):
    where = f"h5py /{group_name}"
    if not check(group_name in f, f"{where}: group missing"):
        return
    group = f[group_name]
    check(list(group.keys()) == list(schema),
          f"{where}: datasets {list(group.keys())}, expected {list(schema)} in this order")
    for name, (dtype, dims) in schema.items():
        if name not in group:
            failures.append(f"{where}/{name}: missing")
            continue
        dataset = group[name]
        if dtype == STR:
            info = h5py.check_string_dtype(dataset.dtype)
            check(info is not None and info.length is None and info.encoding == "utf-8",
                  f"{where}/{name}: expected variable-length UTF-8 strings, found {dataset.dtype}")
        else:
            check(dataset.dtype == np.dtype(dtype),
                  f"{where}/{name}: dtype {dataset.dtype}, expected {dtype}")
        check(dataset.ndim == len(dims),
              f"{where}/{name}: rank {dataset.ndim}, expected {len(dims)}")
        if name in scales:
            check(h5py.h5ds.is_scale(dataset.id), f"{where}/{name}: not a dimension scale")
        else:
            for axis, dim in enumerate(dims[:dataset.ndim]):
                attached = [scale.name for scale in dataset.dims[axis].values()]
                check(attached == [f"/{group_name}/{dim}"],
                      f"{where}/{name}: axis {axis} has scales {attached}, "
                      f"expected /{group_name}/{dim}")
        if name in expected:
            check(same_values(h5py_values(dataset), flatten_nested(expected[name]), dtype),
                  f"{where}/{name}: values {h5py_values(dataset)} != expected {expected[name]}")
    missing = [name for name in expected if name not in schema]
    check(not missing, f"{where}: expected values for datasets outside the schema: {missing}")


def check_h5py(path, expected):
    with h5py.File(path, "r") as f:
        for name, dtype in ROOT_ATTRIBUTES.items():
            if not check(name in f.attrs, f"h5py root attribute {name} missing"):
                continue
            value = f.attrs[name]
            check_dtype(f"h5py root attribute {name}", dtype,
                        getattr(value, "dtype", type(value)), [value])
            if name in expected["root"]:
                check(value == expected["root"][name],
                      f"h5py root attribute {name} = {value!r}, "
                      f"expected {expected['root'][name]!r}")
        check(list(f.attrs) == list(ROOT_ATTRIBUTES),
              f"h5py root attributes in order {list(f.attrs)}, expected {list(ROOT_ATTRIBUTES)}")

        check_h5py_group(f, "grid", GRID, GRID_SCALES, expected["grid"])
        trials_schema = {name: (dtype, ("trial",)) for name, dtype in TRIALS.items()}
        check_h5py_group(f, "trials", trials_schema, ["trial"], expected["trials"])
        check_h5py_group(f, "baseline", BASELINE, BASELINE_SCALES, expected["baseline"])
        check_h5py_group(f, "tensors", TENSORS, ["tensor"], expected["tensors"])
        if "sites" in expected:
            check_h5py_group(f, "sites", SITES, ["site"], expected["sites"])
        else:
            check("sites" not in f, "h5py: /sites present although no sites were recorded")

        status = f["trials/status"]
        flag_values = status.attrs.get("flag_values")
        check(flag_values is not None and flag_values.dtype == np.int32
              and flag_values.tolist() == [0, 1],
              f"h5py /trials/status flag_values = {flag_values!r}, expected int32 [0, 1]")
        check(status.attrs.get("flag_meanings") == "ok nonfinite_outputs",
              f"h5py /trials/status flag_meanings = {status.attrs.get('flag_meanings')!r}")

        listed = {key: [str(item) for item in f["trials"].attrs.get(key, [])]
                  for key in ("column_names", "column_types", "column_units")}
        check(listed["column_names"] == list(TRIALS),
              f"h5py /trials column_names {listed['column_names']}, expected {list(TRIALS)}")
        check(listed["column_types"] == list(TRIALS.values()),
              f"h5py /trials column_types {listed['column_types']}")
        check(listed["column_units"] == [TRIAL_UNITS.get(name, "") for name in TRIALS],
              f"h5py /trials column_units {listed['column_units']}")

        table = f["trials_table"]
        n_rows = len(expected["trials"]["trial"])
        pytables_attributes = {"CLASS": b"TABLE", "VERSION": b"2.7", "TITLE": b"",
                               "NROWS": n_rows}
        pytables_attributes.update({f"FIELD_{i}_NAME": name.encode()
                                    for i, name in enumerate(TRIALS)})
        for name, value in pytables_attributes.items():
            check(table.attrs.get(name) == value,
                  f"h5py /trials_table attribute {name} = {table.attrs.get(name)!r}, "
                  f"expected {value!r}")
        check(table.maxshape == (None,) and table.chunks is not None,
              f"h5py /trials_table: maxshape {table.maxshape}, chunks {table.chunks}; "
              "expected an extendible chunked dataset like a PyTables Table")
        check(list(table.dtype.names) == list(TRIALS),
              f"h5py /trials_table fields {table.dtype.names}, expected {list(TRIALS)}")
        for name, dtype in TRIALS.items():
            field = table.dtype.fields[name][0]
            if dtype == STR:
                check(field.kind == "S",
                      f"h5py /trials_table {name}: {field}, expected fixed-length bytes")
            else:
                check(field == np.dtype(dtype),
                      f"h5py /trials_table {name}: {field}, expected {dtype}")


# ---------------------------------------------------------------------------- xarray


def check_xarray_group(path, group_name, schema, expected, more_checks=None):
    """Opens one group; `more_checks(ds)` runs on the open Dataset."""
    where = f"xarray group={group_name}"
    try:
        ds = xr.open_dataset(path, group=group_name, engine="h5netcdf")
    except Exception as error:  # report the reader's own message
        failures.append(f"{where}: open_dataset failed: {error!r}")
        return
    with ds:
        sizes = {}
        for name, (_, dims) in schema.items():
            for axis, dim in enumerate(dims):
                if name in expected:
                    values = expected[name]
                    sizes[dim] = len(values) if axis == 0 else len(values[0]) if values else 0
        check(dict(ds.sizes) == sizes, f"{where}: sizes {dict(ds.sizes)}, expected {sizes}")
        check(list(ds.variables) == list(schema),
              f"{where}: variables {list(ds.variables)}, expected {list(schema)}")
        for name, (dtype, dims) in schema.items():
            if not check(name in ds.variables, f"{where}: variable {name} missing"):
                continue
            variable = ds[name]
            check(variable.dims == dims, f"{where}/{name}: dims {variable.dims}, expected {dims}")
            values = variable.values
            check_dtype(f"{where}/{name}", dtype, values.dtype, list(values.ravel()))
            if name in expected:
                check(same_values(values, flatten_nested(expected[name]), dtype),
                      f"{where}/{name}: values {values.tolist()} != expected {expected[name]}")
        if more_checks is not None:
            more_checks(ds)


def check_trials_attributes(ds, expected):
    where = "xarray group=trials"
    check("trial" in ds.indexes and ds.indexes["trial"].tolist() == expected["trials"]["trial"],
          f"{where}: `trial` is not the index coordinate")
    for name, units in TRIAL_UNITS.items():
        check(ds[name].attrs.get("units") == units,
              f"{where}/{name}: units {ds[name].attrs.get('units')!r}, expected {units!r}")
    for name in TRIALS:
        check(bool(ds[name].attrs.get("long_name")), f"{where}/{name}: no long_name")
    flag_values = np.asarray(ds["status"].attrs.get("flag_values"))
    check(flag_values.tolist() == [0, 1] and flag_values.dtype == np.int32,
          f"{where}/status flag_values = {flag_values!r}, expected int32 [0, 1]")
    check(ds["status"].attrs.get("flag_meanings") == "ok nonfinite_outputs",
          f"{where}/status flag_meanings = {ds['status'].attrs.get('flag_meanings')!r}")
    if expected["trials"]["trial"]:  # selecting by trial id works on the dimension scale
        last = expected["trials"]["trial"][-1]
        check(ds.sel(trial=last)["model"].item() == expected["trials"]["model"][-1],
              f"{where}: sel(trial=...) picks the wrong row")


# ---------------------------------------------------------------------------- pandas


def check_pytables(path, expected):
    where = "tables /trials_table"
    with tables.open_file(path, "r") as f:
        node = f.get_node("/trials_table")
        check(isinstance(node, tables.Table), f"{where}: opened as {type(node).__name__}")
        check(node.colnames == list(TRIALS), f"{where}: columns {node.colnames}")
        check(node.nrows == len(expected["trials"]["trial"]), f"{where}: {node.nrows} rows")


def check_pandas(path, expected):
    where = "pandas.read_hdf trials_table"
    try:
        frame = pd.read_hdf(path, "trials_table")
    except Exception as error:
        failures.append(f"{where}: failed: {error!r}")
        return
    check(list(frame.columns) == list(TRIALS),
          f"{where}: columns {list(frame.columns)}, expected {list(TRIALS)}")
    n_rows = len(expected["trials"]["trial"])
    check(len(frame) == n_rows, f"{where}: {len(frame)} rows, expected {n_rows}")
    for name, dtype in TRIALS.items():
        if name not in frame:
            continue
        column = frame[name]
        check_dtype(f"{where} {name}", dtype, column.dtype, column.tolist())
        check(same_values(column.to_numpy(), expected["trials"][name], dtype),
              f"{where} {name}: values {column.tolist()} != expected {expected['trials'][name]}")
    wanted_nan = [v is None for v in expected["trials"]["mean_nll"]]
    check(frame["mean_nll"].isna().tolist() == wanted_nan,
          f"{where}: NaN rows of mean_nll {frame['mean_nll'].isna().tolist()}, "
          f"expected {wanted_nan}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    if expected["trials"]["trial"]:
        check(any(v is None for v in expected["trials"]["mean_nll"]),
              "expected values have no NaN mean_nll: NaN handling would go untested")

    check_h5py(path, expected)
    trials_schema = {name: (dtype, ("trial",)) for name, dtype in TRIALS.items()}
    check_xarray_group(path, "trials", trials_schema, expected["trials"],
                       lambda ds: check_trials_attributes(ds, expected))
    check_xarray_group(path, "grid", GRID, expected["grid"])
    check_xarray_group(path, "baseline", BASELINE, expected["baseline"])
    check_xarray_group(path, "tensors", TENSORS, expected["tensors"])
    if "sites" in expected:
        check_xarray_group(path, "sites", SITES, expected["sites"])
    check_pytables(path, expected)
    check_pandas(path, expected)

    for failure in failures:
        print("FAIL:", failure)
    print(f"{path}: {len(failures)} failed checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
