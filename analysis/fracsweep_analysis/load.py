"""Results file (schema fracsweep-results/1, README "Results file") -> pandas and xarray.

`load_results(path)` validates the file and returns a `Results`: the tidy trial table (one
row per completed trial, readable labels), the grid axes, baseline, tensors, recorded sites,
provenance, and which grid trials are missing. `Results.to_xarray()` gives the same trials as
an xarray Dataset over (model, strategy, fraction, seed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from .metrics import METRICS
from .progress import Progress

SCHEMA_FAMILY = "fracsweep-results"
SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_FAMILY}/{SCHEMA_MAJOR}"

GRID_DATASETS = ("model", "model_path", "model_format", "model_n_parameters", "strategy",
                 "strategy_name", "strategy_scope", "strategy_spec", "strategy_deterministic",
                 "fraction", "count", "amount_label", "seed")
# The /trials columns the loader's own checks rely on; every other column (and the names,
# types, units and meanings of all of them) comes from the file's column table.
TRIAL_INDEX_COLUMNS = ("trial", "model_idx", "strategy_idx", "fraction_idx", "seed_idx")
TRIAL_LABEL_COLUMNS = ("model", "strategy")
# Attributes of /trials listing its columns in schema order (include/fracsweep/io/trial_columns.hpp).
COLUMN_TABLE_ATTRIBUTES = {"name": "column_names", "type": "column_types", "units": "column_units",
                           "long_name": "column_long_names"}
DEFAULT_STATUS_MEANINGS = {0: "ok", 1: "nonfinite_outputs"}
READ_CHUNK_ROWS = 1 << 20
LABEL_CHECK_ROWS = 10_000  # label columns are redundant with the indices: spot-check the head


class ResultsFileError(ValueError):
    """A file that is not a readable fracsweep results file; the message says why."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def fraction_label(fraction: float) -> str:
    """0.001 -> '0.1%', 0.25 -> '25%', 3.16e-5 -> '0.00316%'."""
    if not math.isfinite(fraction):
        return "n/a"
    return f"{100.0 * fraction:.3g}%"


def amount_display(fraction: float, amount_label: str) -> str:
    """How an amount is shown to readers: a percentage, or 'N sites' for count entries."""
    if amount_label.startswith("count="):
        count = amount_label.split("=", 1)[1]
        return f"{count} site" if count == "1" else f"{count} sites"
    return fraction_label(fraction)


@dataclass
class Grid:
    """The sweep axes from /grid, each a DataFrame indexed by its position on the axis."""
    models: pd.DataFrame      # index model_idx: model, model_path, model_format, model_n_parameters
    strategies: pd.DataFrame  # index strategy_idx: strategy, strategy_name, strategy_scope, ...
    amounts: pd.DataFrame     # index fraction_idx: fraction (NaN for counts), count, amount_label
    seeds: np.ndarray         # (R) int64
    # Behaviour-probe kinds (/grid/probe_kind, in the file's order); empty for jobs without probes.
    probe_kinds: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.models), len(self.strategies), len(self.amounts), len(self.seeds)

    def enumerate_trials(self) -> pd.DataFrame:
        """Every grid trial in id order (grid.hpp): model-major, then strategy, amount, seed;
        a deterministic strategy has one trial per amount, at the first seed."""
        n_models, _, n_amounts, n_seeds = self.shape
        blocks = []
        for model_idx in range(n_models):
            for strategy_idx, deterministic in enumerate(self.strategies["deterministic"]):
                seeds_used = 1 if deterministic else n_seeds
                amount_idx, seed_idx = np.meshgrid(np.arange(n_amounts), np.arange(seeds_used),
                                                   indexing="ij")
                blocks.append(pd.DataFrame({
                    "model_idx": model_idx, "strategy_idx": strategy_idx,
                    "fraction_idx": amount_idx.ravel(), "seed_idx": seed_idx.ravel()}))
        trials = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(
            columns=["model_idx", "strategy_idx", "fraction_idx", "seed_idx"])
        trials.insert(0, "trial", np.arange(len(trials), dtype=np.int64))
        return trials.astype(np.int64)


@dataclass
class MissingTrials:
    """Grid trials absent from /trials (a partial file), with where they sit on the grid."""
    n_expected: int
    trials: pd.DataFrame  # one row per missing trial: trial, model, strategy, amount, seed

    @property
    def count(self) -> int:
        return len(self.trials)

    def by_cell(self) -> pd.DataFrame:
        """Missing seeds per (model, strategy, amount), in grid order."""
        if self.trials.empty:
            return pd.DataFrame(columns=["model", "strategy", "amount", "n_missing", "seeds"])
        grouped = self.trials.groupby(["model_idx", "strategy_idx", "fraction_idx"], sort=True)
        rows = [{"model": group["model"].iloc[0], "strategy": group["strategy"].iloc[0],
                 "amount": group["amount"].iloc[0], "n_missing": len(group),
                 "seeds": ", ".join(str(seed) for seed in group["seed"])}
                for _, group in grouped]
        return pd.DataFrame(rows)

    def summary(self, max_cells: int = 5) -> str:
        if self.count == 0:
            return f"all {self.n_expected} grid trials present"
        cells = self.by_cell()
        shown = "; ".join(f"{row.model} / {row.strategy} / {row.amount}: seeds {row.seeds}"
                          for row in cells.head(max_cells).itertuples())
        more = f"; and {len(cells) - max_cells} more cells" if len(cells) > max_cells else ""
        return f"{self.count} of {self.n_expected} grid trials missing: {shown}{more}"


@dataclass
class Results:
    path: Path
    provenance: dict            # root attributes, as Python values
    grid: Grid
    trials: pd.DataFrame        # tidy: one row per completed trial (see TIDY_COLUMNS)
    missing: MissingTrials
    baseline: pd.DataFrame | None  # index model: mean_nll, perplexity, accuracy, ...
    tensors: pd.DataFrame | None   # tensor, model_idx, model, name, offset, count, shape, dtype, role
    sites: pd.DataFrame | None     # recorded sites, when the job asked for them
    notes: list[str] = field(default_factory=list)  # data-quality remarks found while loading
    # Adaptive jobs ([sweep] adaptive): one row per search (ADAPTIVE_COLUMNS); None otherwise.
    adaptive: pd.DataFrame | None = None
    # The file's /trials columns, schema order: index name; type ("int32", "int64", "float64",
    # "str"), units ("" when none), long_name (what the column means).
    columns: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["type", "units", "long_name"]))

    @property
    def site_recipe(self) -> str:
        """How the engine drew random sites (root attribute site_recipe, e.g. "feistel-v1");
        files written before the attribute existed used the sparse Fisher-Yates shuffle."""
        return str(self.provenance.get("site_recipe", "fisher-yates"))

    @property
    def is_complete(self) -> bool:
        unfinished = self.adaptive is not None and bool((self.adaptive["outcome"] == "pending").any())
        return self.missing.count == 0 and not unfinished

    def to_xarray(self) -> xr.Dataset:
        return trials_to_dataset(self)


def load_results(path: str | Path, progress: Progress | None = None) -> Results:
    """Reads and validates a results file; raises ResultsFileError with the reason."""
    progress = progress or Progress(enabled=False)
    path = Path(path)
    if not path.exists():
        raise ResultsFileError(path, "no such file")
    if not path.is_file():
        raise ResultsFileError(path, "not a regular file")
    if not h5py.is_hdf5(path):
        raise ResultsFileError(path, "not an HDF5 file (expected a fracsweep results file, "
                                     f"schema {SCHEMA_VERSION})")
    try:
        with h5py.File(path, "r") as h5:
            return _read(path, h5, progress)
    except OSError as error:  # truncated or damaged HDF5
        raise ResultsFileError(path, f"HDF5 library could not read the file: {error}") from error


# --- reading ----------------------------------------------------------------------------------

def _read(path: Path, h5: h5py.File, progress: Progress) -> Results:
    provenance = {name: _python_value(value) for name, value in h5.attrs.items()}
    _check_schema(path, h5, provenance)
    notes: list[str] = []
    grid = _read_grid(path, h5)
    expected = grid.enumerate_trials()
    n_trials_attr = provenance.get("n_trials")
    if n_trials_attr is not None and int(n_trials_attr) != len(expected):
        raise ResultsFileError(path, f"root attribute n_trials is {n_trials_attr} but the /grid axes "
                                     f"enumerate {len(expected)} trials (grid.hpp order)")
    columns = _trial_column_table(path, h5)
    trials = _read_trials(path, h5, grid, expected, columns, notes, progress)
    done_attr = provenance.get("n_trials_done")
    if done_attr is not None and int(done_attr) != len(trials):
        notes.append(f"root attribute n_trials_done is {done_attr} but /trials holds "
                     f"{len(trials)} rows; the rows are used")
    adaptive = _read_adaptive(path, h5, grid)
    if adaptive is not None:
        # A search runs only the lattice points it needs: the others are not missing.
        expected = expected[expected["trial"].isin(trials["trial"])]
        unfinished = int((adaptive["outcome"] == "pending").sum())
        if unfinished:
            notes.append(f"{unfinished} of {len(adaptive)} adaptive searches unfinished (the run "
                         f"stopped before they were settled)")
    missing_ids = np.setdiff1d(expected["trial"].to_numpy(), trials["trial"].to_numpy())
    missing_rows = _label(expected.set_index("trial").loc[missing_ids].reset_index(), grid)
    missing = MissingTrials(n_expected=len(expected), trials=missing_rows[
        ["trial", "model_idx", "strategy_idx", "fraction_idx", "seed_idx",
         "model", "strategy", "amount", "seed"]])
    if missing.count:
        notes.append(missing.summary())
    baseline = _read_baseline(path, h5, grid, notes)
    tensors = _read_tensors(path, h5, grid, notes)
    sites = _read_sites(path, h5)
    return Results(path=path, provenance=provenance, grid=grid, trials=trials, missing=missing,
                   baseline=baseline, tensors=tensors, sites=sites, notes=notes, columns=columns,
                   adaptive=adaptive)


def _check_schema(path: Path, h5: h5py.File, provenance: dict) -> None:
    version = provenance.get("schema_version")
    if version is None:
        found = ", ".join(sorted(h5.keys())) or "nothing"
        raise ResultsFileError(path, "not a fracsweep results file: the root attribute "
                                     f"'schema_version' is missing (top level holds: {found})")
    if not isinstance(version, str) or not version.startswith(SCHEMA_FAMILY + "/"):
        raise ResultsFileError(path, f"not a fracsweep results file: schema_version is {version!r}, "
                                     f"expected {SCHEMA_VERSION!r}")
    major = version[len(SCHEMA_FAMILY) + 1:].split(".", 1)[0]
    if major != str(SCHEMA_MAJOR):
        raise ResultsFileError(path, f"schema_version is {version!r}; this toolkit reads "
                                     f"{SCHEMA_VERSION!r} only")
    for group in ("grid", "trials"):
        if not isinstance(h5.get(group), h5py.Group):
            raise ResultsFileError(path, f"group /{group} is missing (schema {SCHEMA_VERSION})")


def _dataset(path: Path, h5: h5py.File, name: str, length: int | None = None) -> h5py.Dataset:
    node = h5.get(name)
    if not isinstance(node, h5py.Dataset):
        raise ResultsFileError(path, f"dataset /{name} is missing (schema {SCHEMA_VERSION})")
    if node.ndim != 1:
        raise ResultsFileError(path, f"dataset /{name} should be 1-D, found shape {node.shape}")
    if length is not None and node.shape[0] != length:
        raise ResultsFileError(path, f"dataset /{name} has {node.shape[0]} entries, expected {length}")
    return node


def _strings(node: h5py.Dataset, rows: slice = slice(None)) -> np.ndarray:
    """Variable-length or fixed-length string dataset -> object array of str."""
    if h5py.check_string_dtype(node.dtype) is not None:
        return node.asstr()[rows].astype(object)
    raw = node[rows]
    if raw.dtype.kind == "S":
        return np.array([item.decode("utf-8") for item in raw], dtype=object)
    raise TypeError(f"{node.name} is not a string dataset (dtype {node.dtype})")


def _python_value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_python_value(item) for item in value.tolist()] if value.dtype == object else value.tolist()
    return value


def _read_grid(path: Path, h5: h5py.File) -> Grid:
    string_axes = {"model", "model_path", "model_format", "strategy", "strategy_name",
                   "strategy_scope", "strategy_spec", "amount_label"}
    axes = {}
    for name in GRID_DATASETS:
        node = _dataset(path, h5, f"grid/{name}")
        try:
            axes[name] = _strings(node) if name in string_axes else node[()]
        except TypeError as error:
            raise ResultsFileError(path, f"dataset /grid/{name}: expected strings, found dtype "
                                         f"{node.dtype}") from error
    lengths = {"model": ("model", "model_path", "model_format", "model_n_parameters"),
               "strategy": ("strategy", "strategy_name", "strategy_scope", "strategy_spec",
                            "strategy_deterministic"),
               "fraction": ("fraction", "count", "amount_label")}
    for axis, members in lengths.items():
        for member in members:
            if len(axes[member]) != len(axes[axis]):
                raise ResultsFileError(path, f"dataset /grid/{member} has {len(axes[member])} entries "
                                             f"but /grid/{axis} has {len(axes[axis])}")
    for axis in ("model", "strategy", "fraction", "seed"):
        if len(axes[axis]) == 0:
            raise ResultsFileError(path, f"dataset /grid/{axis} is empty: the sweep has no {axis} axis")
    models = pd.DataFrame({"model": axes["model"], "model_path": axes["model_path"],
                           "model_format": axes["model_format"],
                           "model_n_parameters": axes["model_n_parameters"].astype(np.int64)})
    strategies = pd.DataFrame({"strategy": axes["strategy"], "strategy_name": axes["strategy_name"],
                               "strategy_scope": axes["strategy_scope"],
                               "strategy_spec": axes["strategy_spec"],
                               "deterministic": axes["strategy_deterministic"].astype(bool)})
    amounts = pd.DataFrame({"fraction": axes["fraction"].astype(np.float64),
                            "count": axes["count"].astype(np.int64),
                            "amount_label": axes["amount_label"]})
    amounts["is_count"] = amounts["count"] >= 0
    amounts["amount"] = [amount_display(f, label) for f, label in
                         zip(amounts["fraction"], amounts["amount_label"])]
    for frame, axis in ((models, "model"), (strategies, "strategy")):
        duplicated = frame[axis][frame[axis].duplicated()]
        if len(duplicated):
            raise ResultsFileError(path, f"/grid/{axis} labels must be unique; repeated: "
                                         f"{', '.join(map(str, duplicated))}")
    probe_kinds = ()
    if "grid/probe_kind" in h5:
        try:
            probe_kinds = tuple(str(kind) for kind in _strings(_dataset(path, h5, "grid/probe_kind")))
        except TypeError as error:
            raise ResultsFileError(path, "dataset /grid/probe_kind: expected strings, found dtype "
                                         f"{h5['grid/probe_kind'].dtype}") from error
    return Grid(models=models, strategies=strategies, amounts=amounts,
                seeds=np.asarray(axes["seed"], dtype=np.int64), probe_kinds=probe_kinds)


def _trial_column_table(path: Path, h5: h5py.File) -> pd.DataFrame:
    """The /trials column table from the group's attributes; for files written before those
    attributes, from the datasets themselves (creation order, their long_name and units)."""
    group = h5["trials"]
    if COLUMN_TABLE_ATTRIBUTES["name"] in group.attrs:
        table = {}
        for field_name, attribute in COLUMN_TABLE_ATTRIBUTES.items():
            if attribute not in group.attrs:
                raise ResultsFileError(path, f"/trials has attribute column_names but not {attribute}")
            table[field_name] = [str(item) for item in _python_value(group.attrs[attribute])]
        lengths = {attribute: len(table[name]) for name, attribute in COLUMN_TABLE_ATTRIBUTES.items()}
        if len(set(lengths.values())) != 1:
            raise ResultsFileError(path, f"/trials column table attributes differ in length: {lengths}")
    else:
        nodes = [node for node in group.values() if isinstance(node, h5py.Dataset)]
        table = {"name": [node.name.rsplit("/", 1)[1] for node in nodes],
                 "type": [_type_name(node.dtype) for node in nodes],
                 "units": [str(_python_value(node.attrs.get("units", ""))) for node in nodes],
                 "long_name": [str(_python_value(node.attrs.get("long_name", ""))) for node in nodes]}
    return pd.DataFrame(table).set_index("name")


def _type_name(dtype: np.dtype) -> str:
    """The column table's word for a dataset's type: int32, int64, float64, ... or str."""
    if h5py.check_string_dtype(dtype) is not None or dtype.kind == "S":
        return "str"
    return dtype.name


def _read_trials(path: Path, h5: h5py.File, grid: Grid, expected: pd.DataFrame,
                 column_table: pd.DataFrame, notes: list[str], progress: Progress) -> pd.DataFrame:
    required = [name for name in TIDY_COLUMNS if name not in GRID_DERIVED_COLUMNS]
    listed = [name for name in column_table.index if name not in required]
    text_columns = {name for name in listed if column_table.loc[name, "type"] == "str"}
    numeric_columns = tuple(name for name in required + listed
                            if name not in TRIAL_LABEL_COLUMNS and name not in text_columns)
    nodes = {name: _dataset(path, h5, f"trials/{name}") for name in required + listed}
    lengths = {name: node.shape[0] for name, node in nodes.items()}
    n_rows = min(lengths.values())
    if max(lengths.values()) != n_rows:
        longest = max(lengths, key=lengths.get)
        notes.append(f"/trials datasets have unequal lengths ({n_rows} to {lengths[longest]} rows, "
                     f"e.g. /trials/{longest}): an interrupted write; the first {n_rows} rows are used")
    columns: dict[str, np.ndarray] = {}
    progress.start(f"reading {n_rows} trials", len(numeric_columns) * max(1, math.ceil(n_rows / READ_CHUNK_ROWS)))
    for name in numeric_columns:
        node = nodes[name]
        if node.dtype.kind not in "iuf":
            raise ResultsFileError(path, f"dataset /trials/{name} should be numeric, found dtype {node.dtype}")
        column = np.empty(n_rows, dtype=node.dtype)  # (n_rows)
        for start in range(0, n_rows, READ_CHUNK_ROWS):
            stop = min(start + READ_CHUNK_ROWS, n_rows)
            column[start:stop] = node[start:stop]
            progress.advance()
        columns[name] = column
    progress.finish()

    ids = columns["trial"].astype(np.int64)
    if n_rows and (np.any(np.diff(ids) <= 0)):
        raise ResultsFileError(path, "/trials/trial must be strictly ascending trial ids")
    if n_rows and (ids[0] < 0 or ids[-1] >= len(expected)):
        raise ResultsFileError(path, f"/trials/trial holds ids outside [0, {len(expected)}) "
                                     f"(found {ids[0]} .. {ids[-1]})")
    grid_cells = expected.set_index("trial").loc[ids]
    for name in ("model_idx", "strategy_idx", "fraction_idx", "seed_idx"):
        disagree = np.flatnonzero(grid_cells[name].to_numpy() != columns[name])
        if disagree.size:
            row = disagree[0]
            raise ResultsFileError(path, f"/trials/{name} of trial {ids[row]} is {columns[name][row]}, "
                                         f"but the grid order puts that trial at {name} "
                                         f"{grid_cells[name].iloc[row]} ({disagree.size} rows disagree)")
    _check_label_columns(path, nodes, columns, grid, min(n_rows, LABEL_CHECK_ROWS))

    status_names = _status_meanings(nodes["status"])
    trials = pd.DataFrame({name: columns[name] for name in TRIAL_INDEX_COLUMNS})
    trials = _label(trials.astype(np.int64), grid)
    for name in numeric_columns:
        if name not in TRIAL_INDEX_COLUMNS and name != "status":
            trials[name] = columns[name]
    for name in text_columns:
        trials[name] = _strings(nodes[name], slice(0, n_rows))
    unknown_status = set(np.unique(columns["status"]).tolist()) - set(status_names)
    if unknown_status:
        raise ResultsFileError(path, f"/trials/status has values {sorted(unknown_status)} not in its "
                                     f"flag_values {sorted(status_names)}")
    trials["status"] = pd.Categorical([status_names[code] for code in columns["status"].tolist()],
                                      categories=list(status_names.values()))
    for name in ("mean_nll", "perplexity", "mean_kl", "max_kl", "top1_agreement", "accuracy"):
        if not np.issubdtype(trials[name].dtype, np.floating):
            trials[name] = trials[name].astype(np.float64)
    return trials[TIDY_COLUMNS + listed]


# The tidy table's leading columns (every file must have them); the file's other /trials
# columns follow in schema order.
TIDY_COLUMNS = ["trial", "model", "strategy", "strategy_name", "strategy_scope", "deterministic",
                "amount", "amount_label", "fraction", "seed", "k", "n_scope", "positions",
                "nonfinite_positions", *[m for m in METRICS if m != "nonfinite_positions"],
                "greedy_length", "status", "wall_s", "rank",
                "model_idx", "strategy_idx", "fraction_idx", "seed_idx"]
# Tidy columns looked up on the /grid axes rather than read from /trials.
GRID_DERIVED_COLUMNS = ("strategy_name", "strategy_scope", "deterministic", "amount", "amount_label")


def _label(indices: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Adds readable labels for the grid indices of each row."""
    labelled = indices.copy()
    labelled["model"] = grid.models["model"].to_numpy()[indices["model_idx"]]
    strategies = grid.strategies
    for column in ("strategy", "strategy_name", "strategy_scope", "deterministic"):
        labelled[column] = strategies[column].to_numpy()[indices["strategy_idx"]]
    labelled["amount"] = grid.amounts["amount"].to_numpy()[indices["fraction_idx"]]
    labelled["amount_label"] = grid.amounts["amount_label"].to_numpy()[indices["fraction_idx"]]
    if "seed" not in labelled:
        labelled["seed"] = grid.seeds[indices["seed_idx"].to_numpy()]
    return labelled


def _check_label_columns(path: Path, nodes: dict, columns: dict, grid: Grid, n_check: int) -> None:
    for label, axis_frame, index_name in (("model", grid.models, "model_idx"),
                                          ("strategy", grid.strategies, "strategy_idx")):
        stored = _strings(nodes[label], slice(0, n_check))
        implied = axis_frame[label].to_numpy()[columns[index_name][:n_check]]
        disagree = np.flatnonzero(stored != implied)
        if disagree.size:
            row = disagree[0]
            raise ResultsFileError(path, f"/trials/{label} of row {row} is {stored[row]!r} but "
                                         f"/trials/{index_name} points at {implied[row]!r}")
    seeds = grid.seeds[columns["seed_idx"]]
    disagree = np.flatnonzero(seeds != columns["seed"])
    if disagree.size:
        row = disagree[0]
        raise ResultsFileError(path, f"/trials/seed of row {row} is {columns['seed'][row]} but "
                                     f"/trials/seed_idx points at seed {seeds[row]}")


def _status_meanings(node: h5py.Dataset) -> dict[int, str]:
    values = node.attrs.get("flag_values")
    meanings = node.attrs.get("flag_meanings")
    if values is None or meanings is None:
        return dict(DEFAULT_STATUS_MEANINGS)
    names = _python_value(meanings).split()
    return {int(value): name for value, name in zip(np.atleast_1d(values).tolist(), names)}


def _read_baseline(path: Path, h5: h5py.File, grid: Grid, notes: list[str]) -> pd.DataFrame | None:
    if "baseline" not in h5:
        notes.append("no /baseline group: thresholds relative to the unperturbed model are unavailable")
        return None
    n_models = len(grid.models)
    frame = pd.DataFrame({"model": _strings(_dataset(path, h5, "baseline/model", n_models))})
    if list(frame["model"]) != list(grid.models["model"]):
        raise ResultsFileError(path, "/baseline/model does not list the /grid/model labels in order")
    for name in ("mean_nll", "perplexity", "accuracy", "positions", "nonfinite_positions",
                 "greedy_length"):
        frame[name] = _dataset(path, h5, f"baseline/{name}", n_models)[()]
    if "greedy_text" in h5["baseline"]:
        frame["greedy_text"] = _strings(_dataset(path, h5, "baseline/greedy_text", n_models))
    for kind in grid.probe_kinds:  # /baseline/probe_<kind>_rate, _logprob (unperturbed behaviour)
        for name in (f"probe_{kind}_rate", f"probe_{kind}_logprob"):
            if f"baseline/{name}" in h5:
                frame[name] = _dataset(path, h5, f"baseline/{name}", n_models)[()].astype(np.float64)
            else:
                notes.append(f"/grid/probe_kind lists {kind!r} but /baseline/{name} is missing: "
                             f"thresholds relative to its baseline are unavailable")
    return frame.set_index("model")


def _read_tensors(path: Path, h5: h5py.File, grid: Grid, notes: list[str]) -> pd.DataFrame | None:
    if "tensors" not in h5:
        notes.append("no /tensors group: sites cannot be listed and per-tensor views are unavailable")
        return None
    n_tensors = _dataset(path, h5, "tensors/name").shape[0]
    frame = pd.DataFrame({
        "tensor": _dataset(path, h5, "tensors/tensor", n_tensors)[()].astype(np.int64),
        "model_idx": _dataset(path, h5, "tensors/model_idx", n_tensors)[()].astype(np.int64),
        "name": _strings(_dataset(path, h5, "tensors/name", n_tensors)),
        "offset": _dataset(path, h5, "tensors/offset", n_tensors)[()].astype(np.int64),
        "count": _dataset(path, h5, "tensors/count", n_tensors)[()].astype(np.int64),
        "shape": _strings(_dataset(path, h5, "tensors/shape", n_tensors)),
    })
    # Stored number format per tensor (f32, f16, bf16); files without it are all float32.
    frame["dtype"] = (_strings(_dataset(path, h5, "tensors/dtype", n_tensors)) if "tensors/dtype" in h5
                      else "f32")
    # Role per tensor: "parameter" (learned) or "buffer" (e.g. batch-norm running statistics,
    # outside the default scope); files without the column hold learned parameters only.
    frame["role"] = (_strings(_dataset(path, h5, "tensors/role", n_tensors)) if "tensors/role" in h5
                     else "parameter")
    if len(frame) and (frame["model_idx"].min() < 0 or frame["model_idx"].max() >= len(grid.models)):
        raise ResultsFileError(path, "/tensors/model_idx points outside /grid/model")
    frame.insert(2, "model", grid.models["model"].to_numpy()[frame["model_idx"]])
    return frame


ADAPTIVE_COLUMNS = ["model_idx", "strategy_idx", "seed_idx", "model", "strategy", "seed",
                    "criterion", "outcome", "fraction_below", "fraction_above", "trials", "f_star"]
SEARCH_OUTCOMES = ("bracketed", "below_range", "not_reached", "pending")


def _read_adaptive(path: Path, h5: h5py.File, grid: Grid) -> pd.DataFrame | None:
    """/adaptive: one row per search; `f_star` is the geometric midpoint of a bracket, 0 for a
    search settled at or below the smallest fraction, +inf above the largest, NaN unfinished."""
    if "adaptive" not in h5:
        return None
    group = h5["adaptive"]
    n = _dataset(path, h5, "adaptive/outcome").shape[0]
    table = pd.DataFrame({name: _dataset(path, h5, f"adaptive/{name}", n)[()]
                          for name in ("model_idx", "strategy_idx", "seed_idx", "fraction_below",
                                       "fraction_above", "trials")})
    table["criterion"] = _strings(group["criterion"])
    table["outcome"] = _strings(group["outcome"])
    unknown = set(table["outcome"]) - set(SEARCH_OUTCOMES)
    if unknown:
        raise ResultsFileError(path, f"/adaptive/outcome holds {sorted(unknown)}; expected "
                                     f"{', '.join(SEARCH_OUTCOMES)}")
    for column, axis in (("model_idx", grid.models), ("strategy_idx", grid.strategies),
                         ("seed_idx", grid.seeds)):
        values = table[column].to_numpy()
        if len(values) and (values.min() < 0 or values.max() >= len(axis)):
            raise ResultsFileError(path, f"/adaptive/{column} points outside its /grid axis")
    table["model"] = grid.models["model"].to_numpy()[table["model_idx"].to_numpy()]
    table["strategy"] = grid.strategies["strategy"].to_numpy()[table["strategy_idx"].to_numpy()]
    table["seed"] = grid.seeds[table["seed_idx"].to_numpy()]
    f_star = np.sqrt(table["fraction_below"].to_numpy() * table["fraction_above"].to_numpy())
    f_star[table["outcome"].to_numpy() == "below_range"] = 0.0
    f_star[table["outcome"].to_numpy() == "not_reached"] = np.inf
    table["f_star"] = f_star
    return table[ADAPTIVE_COLUMNS]


def _read_sites(path: Path, h5: h5py.File) -> pd.DataFrame | None:
    if "sites" not in h5:
        return None
    n_sites = _dataset(path, h5, "sites/trial").shape[0]
    frame = pd.DataFrame({
        "trial": _dataset(path, h5, "sites/trial", n_sites)[()].astype(np.int64),
        "site_rank": _dataset(path, h5, "sites/site_rank", n_sites)[()].astype(np.int64),
        "offset": _dataset(path, h5, "sites/offset", n_sites)[()].astype(np.int64),
        "tensor": _strings(_dataset(path, h5, "sites/tensor", n_sites)),
        "index_in_tensor": _dataset(path, h5, "sites/index_in_tensor", n_sites)[()].astype(np.int64),
    })
    for name in ("old_value", "new_value"):
        if name in h5["sites"]:
            frame[name] = _dataset(path, h5, f"sites/{name}", n_sites)[()].astype(np.float32)
    return frame


# --- xarray view ------------------------------------------------------------------------------

DATASET_VARIABLES = ("k", "n_scope", "fraction", "positions", "nonfinite_positions",
                     *[m for m in METRICS if m != "nonfinite_positions"], "greedy_length", "wall_s")
# /trials columns that are coordinates or bookkeeping of the xarray view, not its variables.
NOT_DATASET_VARIABLES = (*TRIAL_INDEX_COLUMNS, "seed", "rank", "status")


def trials_to_dataset(results: Results) -> xr.Dataset:
    """Trials as an xarray Dataset over (model, strategy, fraction, seed).

    Cells are NaN where a trial is missing from a partial file (`present` False) or not part of
    the grid (`in_grid` False: deterministic strategies run only the first seed). A NaN metric
    with `present` True is a trial whose outputs were non-finite. The `fraction` coordinate is the
    requested fraction (NaN for count entries; `amount_label` names every entry) and the
    variable `effective_fraction` is k / n_scope of each trial.
    """
    grid, trials = results.grid, results.trials
    shape = grid.shape
    cell = (trials["model_idx"].to_numpy(), trials["strategy_idx"].to_numpy(),
            trials["fraction_idx"].to_numpy(), trials["seed_idx"].to_numpy())
    dims = ("model", "strategy", "fraction", "seed")
    variables = {}
    columns = results.columns
    numeric_extras = [name for name in columns.index
                      if name in trials and name not in DATASET_VARIABLES + NOT_DATASET_VARIABLES
                      and columns.loc[name, "type"] != "str"]
    for name in (*DATASET_VARIABLES, *numeric_extras):
        values = np.full(shape, np.nan)  # (M, S, F, R)
        values[cell] = trials[name].to_numpy(dtype=np.float64)
        target = "effective_fraction" if name == "fraction" else name
        attrs = {}
        if name in columns.index:  # the file's own words for the column
            attrs["long_name"] = columns.loc[name, "long_name"]
            if columns.loc[name, "units"]:
                attrs["units"] = columns.loc[name, "units"]
        variables[target] = (dims, values, attrs)
    trial_ids = np.full(shape, -1, dtype=np.int64)  # (M, S, F, R) -1: no trial
    trial_ids[cell] = trials["trial"].to_numpy()
    status = np.full(shape, "", dtype=object)  # (M, S, F, R)
    status[cell] = trials["status"].astype(str).to_numpy()
    expected = grid.enumerate_trials()
    in_grid = np.zeros(shape, dtype=bool)  # (M, S, F, R)
    in_grid[(expected["model_idx"].to_numpy(), expected["strategy_idx"].to_numpy(),
             expected["fraction_idx"].to_numpy(), expected["seed_idx"].to_numpy())] = True
    variables["trial"] = (dims, trial_ids, {"long_name": "trial id (-1: no trial)"})
    variables["status"] = (dims, status)
    variables["present"] = (dims, trial_ids >= 0)
    variables["in_grid"] = (dims, in_grid)
    coords = {
        "model": grid.models["model"].to_numpy(dtype=str),
        "strategy": grid.strategies["strategy"].to_numpy(dtype=str),
        "fraction": grid.amounts["fraction"].to_numpy(),
        "seed": grid.seeds,
        "amount_label": ("fraction", grid.amounts["amount_label"].to_numpy(dtype=str)),
        "strategy_name": ("strategy", grid.strategies["strategy_name"].to_numpy(dtype=str)),
        "strategy_scope": ("strategy", grid.strategies["strategy_scope"].to_numpy(dtype=str)),
        "deterministic": ("strategy", grid.strategies["deterministic"].to_numpy()),
    }
    attrs = {name: value for name, value in results.provenance.items()
             if isinstance(value, (str, int, float))}
    attrs["source_file"] = str(results.path)
    attrs["missing_trials"] = results.missing.count
    return xr.Dataset(variables, coords=coords, attrs=attrs)
