"""The README's column tables, the synthetic writer and the analysis loader against the column
table of a results file the engine writes (jobs/stories260K-smoke.ini).

The engine's /trials group lists its columns (attributes column_names, column_types,
column_units, column_long_names); each /trials/<column> carries long_name and, when it has a
unit, units. Skips with the reason when the engine or ../shared is absent (fails when CI=true).
"""
import re
from pathlib import Path

import h5py
import pytest

from engine_runner import SMOKE_JOB, require_engine
from fracsweep_analysis.load import load_results
from synthetic_results import TRIAL_COLUMNS

README = Path(__file__).resolve().parents[2] / "README.md"
CELL_SPLIT = re.compile(r"(?<!\\)\|")  # a cell border: a '|' not escaped as '\|'


@pytest.fixture(scope="module")
def engine_file(tmp_path_factory):
    engine = require_engine()
    return engine.run(SMOKE_JOB, tmp_path_factory.mktemp("schema") / "smoke.h5")


@pytest.fixture(scope="module")
def file_columns(engine_file):
    """{name: (type, units, long_name)} from the /trials column table, in schema order."""
    with h5py.File(engine_file, "r") as h5:
        attrs = h5["trials"].attrs
        columns = [[str(item) for item in attrs[key]] for key in
                   ("column_names", "column_types", "column_units", "column_long_names")]
    assert len({len(values) for values in columns}) == 1, "column table attributes differ in length"
    return {name: (kind, units, long_name) for name, kind, units, long_name in zip(*columns)}


def readme_column_tables() -> list[dict[str, dict[str, str]]]:
    """Every README table whose first header cell is 'column': {name: {header: cell}} each."""
    tables, header, rows = [], None, None
    for line in README.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.startswith("|"):
            if rows is not None:
                tables.append(rows)
            header, rows = None, None
            continue
        cells = [cell.strip().replace(r"\|", "|") for cell in CELL_SPLIT.split(line)[1:-1]]
        if header is None:
            header = cells
            rows = {} if cells[0] == "column" else None
        elif rows is not None and not set(line) <= set("|-"):
            name = cells[0].strip("`")
            assert name not in rows, f"README table lists {name} twice"
            rows[name] = dict(zip(header, cells))
    return tables


def test_file_lists_every_trials_dataset_with_its_attributes(engine_file, file_columns):
    with h5py.File(engine_file, "r") as h5:
        trials = h5["trials"]
        assert list(trials.keys()) == list(file_columns)  # creation order is schema order
        for name, (_, units, long_name) in file_columns.items():
            assert trials[name].attrs["long_name"] == long_name, name
            assert trials[name].attrs.get("units", "") == units, name
        assert list(h5["trials_table"].dtype.names) == list(file_columns)


def test_readme_trials_table_is_the_files_column_table(file_columns):
    full = [table for table in readme_column_tables() if "type" in next(iter(table.values()))]
    assert len(full) == 1, "README needs exactly one | column | type | unit | meaning | table"
    documented = full[0]
    assert list(documented) == list(file_columns), "README /trials table: other columns or order"
    for name, (kind, units, long_name) in file_columns.items():
        row = documented[name]
        assert (row["type"], row["unit"], row["meaning"]) == (kind, units, long_name), name


def test_readme_metrics_table_uses_the_files_units_and_meanings(file_columns):
    metrics = [table for table in readme_column_tables()
               if "type" not in next(iter(table.values()))]
    assert len(metrics) == 1, "README needs exactly one | column | unit | meaning | table"
    assert "sdc_rate" in metrics[0] and "top1_agreement" in metrics[0]
    for name, row in metrics[0].items():
        assert name in file_columns, f"README Metrics table lists {name}, not a /trials column"
        _, units, long_name = file_columns[name]
        assert (row["unit"], row["meaning"]) == (units, long_name), name


def test_synthetic_writer_matches_the_engine(file_columns):
    assert [(name, kind, units, long_name) for name, (kind, units, long_name)
            in file_columns.items()] == list(TRIAL_COLUMNS)


def test_loader_reads_the_column_table_from_the_file(engine_file, file_columns):
    results = load_results(engine_file)
    assert list(results.columns.index) == list(file_columns)
    assert results.columns.loc["mean_kl", "units"] == file_columns["mean_kl"][1] == "nats"
    # Columns the loader has no name for still reach the tidy table and the xarray view.
    assert {"sdc_rate", "stored_dtype"} <= set(results.trials.columns)
    assert set(results.trials["stored_dtype"]) == {"f32"}
    dataset = results.to_xarray()
    assert dataset["sdc_rate"].attrs["long_name"] == file_columns["sdc_rate"][2]
    assert dataset["mean_nll"].attrs["units"] == "nats"
