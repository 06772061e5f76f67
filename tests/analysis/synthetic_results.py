"""Writes synthetic results files that follow the README schema (fracsweep-results/1) exactly.

The outcome of every trial is planted: per (strategy, seed) a critical fraction
    log10 f*_seed = log10 f* + noise_sd * z_seed,   z_seed ~ N(0, 1) from (strategy, seed)
and with r = (f / f*_seed) ** hill every default criterion of the analysis is crossed exactly at
f*_seed:
    top1_agreement = Binomial(positions, 1 / (1 + r)) / positions      (0.5 at f*_seed)
    mean_kl        = 0.5 * r                                            (0.5 nats at f*_seed)
    mean_nll       = baseline_nll * (1 + 0.5 * r)                       (1.5 x baseline)
    accuracy       = baseline_accuracy - 0.2 * r / (1 + r)              (-10 points)
    sdc_rate       = baseline_accuracy - accuracy
so the population median of f*_seed is f*. Trials above `destroyed_above` have non-finite outputs
(the engine's convention: NaN losses, zero agreement, every position non-finite).

Behaviour probes (`probe_kinds` non-empty) are planted the same way, per (model, strategy, kind)
with a `Behaviour`: log10 f_b,seed = log10 f_b + noise_sd * z and r = (f / f_b,seed) ** hill,
    probe_<kind>_rate    = start + (towards - start) * r / (1 + r)   (halfway at f_b,seed)
    probe_<kind>_logprob = start_logprob + logprob_slope * r / (1 + r)
where start is the model's baseline rate. towards = 0 plants a behaviour that drops below 50%
of its baseline exactly at f_b,seed; start = 0, towards = T one that rises above T / 2 there (a
transplanted fine-tune). Kinds without a Behaviour stay at the baseline. A strategy with a
`donor` (delta from=DONOR) changes nothing on the donor model itself: k_changed = 0 and every
metric at the baseline, as the engine records it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SCHEMA_VERSION = "fracsweep-results/1"
DEFAULT_SCOPE = "include=*;exclude="
DEFAULT_TENSORS = (("tok_embeddings", (64, 16)), ("layers.0.attn.wq", (16, 16)),
                   ("layers.0.ffn.w1", (32, 16)), ("layers.1.attn.wq", (16, 16)),
                   ("layers.1.ffn.w1", (32, 16)), ("norm_final", (16,)))


@dataclass
class StrategyDef:
    label: str                 # canonical label, e.g. "zero" or "gaussian(sigma=0.1,relative=abs)"
    name: str
    scope: str = DEFAULT_SCOPE
    spec: str = ""
    deterministic: bool = False
    f_star: float = 0.01       # planted critical fraction (population median over seeds)
    noise_sd: float = 0.15     # seed-to-seed spread of log10 f*
    hill: float = 2.0          # steepness of the transition in log f
    destroyed_above: float = math.inf  # fractions above this give non-finite outputs
    donor: str | None = None   # delta from=DONOR: a no-op on the model named DONOR


@dataclass(frozen=True)
class Behaviour:
    """A planted probe-rate curve of one (model, strategy, kind); see the module docstring."""
    f_b: float                 # planted crossing of the halfway point (population median)
    towards: float = 0.0       # the rate the curve tends to at large f
    noise_sd: float = 0.0      # seed-to-seed spread of log10 f_b (0: every seed identical)
    hill: float = 2.0
    logprob_slope: float = -20.0


@dataclass
class SyntheticSweep:
    strategies: list[StrategyDef]
    fractions: list[float | str]          # fractions, or "count=N" entries
    seeds: list[int]
    models: list[str] = field(default_factory=lambda: ["tiny"])
    tensors: tuple = DEFAULT_TENSORS       # (name, shape) of every model, in file order
    job_seed: int = 20261126
    positions: int = 4000
    baseline_nll: float = 1.4
    baseline_accuracy: float = 0.6
    greedy_length: int = 64
    omit_trials: set[int] = field(default_factory=set)  # left out, as in a partial file
    sites: dict[int, dict] = field(default_factory=dict)  # trial -> columns of /sites rows
    outcome_seed: int = 7                  # seeds the binomial noise of top-1 agreement
    complete: bool = True                  # False: n_trials_done / finished_utc as if killed
    site_recipe: str | None = "feistel-v1"  # root attribute site_recipe; None: absent (old files)
    probe_kinds: tuple[str, ...] = ()      # behaviour-probe kinds: probe columns when non-empty
    # Baseline rate and log-prob per (model, kind); absent pairs: rate 0, log-prob -30.
    probe_baseline: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    behaviour: dict[tuple[str, str, str], Behaviour] = field(default_factory=dict)  # (model, strategy, kind)

    @property
    def n_parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors)

    def grid_trials(self) -> list[tuple[int, int, int, int, int]]:
        """(trial, model, strategy, amount, seed) indices: model-major, deterministic once."""
        cells = []
        for model_idx in range(len(self.models)):
            for strategy_idx, strategy in enumerate(self.strategies):
                seeds_used = 1 if strategy.deterministic else len(self.seeds)
                for amount_idx in range(len(self.fractions)):
                    for seed_idx in range(seeds_used):
                        cells.append((len(cells), model_idx, strategy_idx, amount_idx, seed_idx))
        return cells

    def seed_f_star(self, strategy_idx: int, seed_idx: int) -> float:
        strategy = self.strategies[strategy_idx]
        if strategy.deterministic:
            return strategy.f_star
        z = np.random.default_rng([self.outcome_seed, strategy_idx, seed_idx]).standard_normal()
        return 10.0 ** (math.log10(strategy.f_star) + strategy.noise_sd * z)

    def baseline_probe(self, model: str, kind: str) -> tuple[float, float]:
        return self.probe_baseline.get((model, kind), (0.0, -30.0))

    def seed_f_b(self, model_idx: int, strategy_idx: int, kind: str, seed_idx: int) -> float:
        planted = self.behaviour[(self.models[model_idx], self.strategies[strategy_idx].label, kind)]
        if self.strategies[strategy_idx].deterministic or planted.noise_sd == 0:
            return planted.f_b
        kind_idx = self.probe_kinds.index(kind)
        generator = np.random.default_rng([self.outcome_seed, model_idx, strategy_idx, seed_idx, 2, kind_idx])
        z = generator.standard_normal()
        return 10.0 ** (math.log10(planted.f_b) + planted.noise_sd * z)

    def amount(self, amount_idx: int) -> tuple[float, int, str]:
        """(fraction or NaN, count or -1, amount_label)."""
        entry = self.fractions[amount_idx]
        if isinstance(entry, str):
            count = int(entry.split("=", 1)[1])
            return math.nan, count, entry
        return float(entry), -1, f"{entry:g}"


def planted_row(sweep: SyntheticSweep, model_idx: int, strategy_idx: int, amount_idx: int,
                seed_idx: int) -> dict:
    strategy = sweep.strategies[strategy_idx]
    n_scope = sweep.n_parameters
    fraction, count, _ = sweep.amount(amount_idx)
    k = min(count, n_scope) if count >= 0 else min(int(math.floor(fraction * n_scope + 0.5)), n_scope)
    effective = k / n_scope if count >= 0 else fraction
    ratio = (effective / sweep.seed_f_star(strategy_idx, seed_idx)) ** strategy.hill
    rng = np.random.default_rng([sweep.outcome_seed, model_idx, strategy_idx, amount_idx, seed_idx, 1])
    positions = sweep.positions
    row = dict(fraction=effective, seed=sweep.seeds[seed_idx], k=k, k_changed=k, n_scope=n_scope,
               positions=positions, greedy_length=sweep.greedy_length,
               wall_s=0.01 + 0.001 * seed_idx, rank=seed_idx % 2)
    model = sweep.models[model_idx]
    no_op = strategy.donor == model
    if no_op:  # delta toward the model itself: nothing changes
        ratio, row["k_changed"] = 0.0, 0
    row.update(planted_probes(sweep, model_idx, strategy_idx, effective, seed_idx, no_op))
    if effective > strategy.destroyed_above and not no_op:
        row.update(nonfinite_positions=positions, mean_nll=math.nan, perplexity=math.nan,
                   mean_nll_finite=math.nan, accuracy=0.0, top1_agreement=0.0, mean_kl=math.nan,
                   max_kl=math.nan, mean_kl_finite=math.nan, greedy_match=0, status=1,
                   sdc_rate=sweep.baseline_accuracy)
        for kind in sweep.probe_kinds:  # non-finite rows: no prompt behaves, log-prob NaN
            row.update({f"probe_{kind}_rate": 0.0, f"probe_{kind}_logprob": math.nan})
        return row
    agreement = rng.binomial(positions, 1.0 / (1.0 + ratio)) / positions
    mean_nll = sweep.baseline_nll * (1.0 + 0.5 * ratio)
    perplexity = math.exp(mean_nll) if mean_nll < 709.0 else math.inf  # overflows like C's exp
    accuracy = sweep.baseline_accuracy - 0.2 * ratio / (1 + ratio)
    row.update(nonfinite_positions=0, mean_nll=mean_nll, perplexity=perplexity,
               mean_nll_finite=mean_nll, accuracy=accuracy,
               sdc_rate=sweep.baseline_accuracy - accuracy,
               top1_agreement=agreement, mean_kl=0.5 * ratio, max_kl=5.0 * ratio,
               mean_kl_finite=0.5 * ratio,
               greedy_match=int(round(sweep.greedy_length / (1.0 + ratio))), status=0)
    return row


def planted_probes(sweep: SyntheticSweep, model_idx: int, strategy_idx: int, fraction: float,
                   seed_idx: int, no_op: bool = False) -> dict:
    """probe_<kind>_rate and _logprob of one trial (module docstring)."""
    model, strategy = sweep.models[model_idx], sweep.strategies[strategy_idx].label
    values = {}
    for kind in sweep.probe_kinds:
        rate, logprob = sweep.baseline_probe(model, kind)
        planted = sweep.behaviour.get((model, strategy, kind))
        if planted is not None and not no_op:
            ratio = (fraction / sweep.seed_f_b(model_idx, strategy_idx, kind, seed_idx)) ** planted.hill
            moved = ratio / (1.0 + ratio)
            rate, logprob = rate + (planted.towards - rate) * moved, logprob + planted.logprob_slope * moved
        values[f"probe_{kind}_rate"] = rate
        values[f"probe_{kind}_logprob"] = logprob
    return values


# The engine's /trials column table (include/fracsweep/io/trial_columns.hpp), in schema order:
# (name, type, units, long_name). Datasets, their long_name / units attributes, the /trials
# column-table attributes and the /trials_table fields are all derived from it;
# test_schema_docs.py checks it against a file the engine writes.
TRIAL_COLUMNS = (
    ("trial", "int64", "", "trial id"),
    ("model_idx", "int32", "", "index into /grid/model"),
    ("strategy_idx", "int32", "", "index into /grid/strategy"),
    ("fraction_idx", "int32", "", "index into /grid/fraction"),
    ("seed_idx", "int32", "", "index into /grid/seed"),
    ("model", "str", "", "model label"),
    ("strategy", "str", "", "strategy label"),
    ("stored_dtype", "str", "",
     "stored number formats of the in-scope tensors (f32, f16, bf16, joined by +)"),
    ("fraction", "float64", "1", "fraction of in-scope parameters (k / n_scope for count entries)"),
    ("seed", "int64", "", "trial seed"),
    ("k", "int64", "", "parameters perturbed (bfa: the flip budget)"),
    ("k_changed", "int64", "", "perturbed parameters whose stored bits changed"),
    ("n_scope", "int64", "", "in-scope parameters"),
    ("positions", "int64", "", "predicted positions evaluated"),
    ("nonfinite_positions", "int64", "", "positions whose logits contain NaN or Inf"),
    ("mean_nll", "float64", "nats", "mean negative log-likelihood of the next token"),
    ("perplexity", "float64", "1", "exp(mean_nll)"),
    ("mean_nll_finite", "float64", "nats", "mean negative log-likelihood over finite positions"),
    ("accuracy", "float64", "1", "fraction of positions whose argmax is the next token"),
    ("sdc_rate", "float64", "1",
     "fraction of positions right before the perturbation and wrong after"),
    ("top1_agreement", "float64", "1",
     "fraction of positions whose argmax equals the unperturbed argmax"),
    ("mean_kl", "float64", "nats", "mean KL(unperturbed || perturbed) over positions"),
    ("max_kl", "float64", "nats", "max KL(unperturbed || perturbed) over positions"),
    ("mean_kl_finite", "float64", "nats", "mean KL(unperturbed || perturbed) over finite positions"),
    ("greedy_match", "int64", "", "leading greedy tokens equal to the unperturbed continuation"),
    ("greedy_length", "int64", "", "length of the unperturbed greedy continuation"),
    ("wall_s", "float64", "s", "wall time of perturb, forward, metrics and restore"),
    ("rank", "int32", "", "MPI rank that ran the trial"),
    ("status", "int32", "", "trial status"),
)
# Two columns per probe kind after the fixed ones (trial_columns.hpp, probe_column_templates):
# (suffix, type, units, long_name with {kind}).
PROBE_COLUMN_TEMPLATES = (
    ("_rate", "float64", "1",
     "fraction of {kind} probe prompts whose greedy continuation begins with the target"),
    ("_logprob", "float64", "nats", "mean over {kind} probe prompts of log p(target | prompt)"),
)


def probe_columns(kinds) -> tuple:
    """The probe columns of a file with these kinds, in schema order (TRIAL_COLUMNS rows)."""
    return tuple((f"probe_{kind}{suffix}", column_type, units, long_name.replace("{kind}", kind))
                 for kind in kinds for suffix, column_type, units, long_name in PROBE_COLUMN_TEMPLATES)


def trial_columns(sweep: SyntheticSweep) -> tuple:
    return TRIAL_COLUMNS + probe_columns(sweep.probe_kinds)


def trial_dtypes(columns) -> dict:
    return {name: str if kind == "str" else np.dtype(kind).type for name, kind, _, _ in columns}


TRIAL_DTYPES = trial_dtypes(TRIAL_COLUMNS)


def _describe_trials(trials: h5py.Group, columns=TRIAL_COLUMNS) -> None:
    """The column table as attributes of /trials and long_name / units of every column."""
    trials.attrs["column_names"] = [name for name, _, _, _ in columns]
    trials.attrs["column_types"] = [kind for _, kind, _, _ in columns]
    trials.attrs["column_units"] = [units for _, _, units, _ in columns]
    trials.attrs["column_long_names"] = [long_name for _, _, _, long_name in columns]
    for name, _, units, long_name in columns:
        trials[name].attrs["long_name"] = long_name
        if units:
            trials[name].attrs["units"] = units


def _strings(group: h5py.Group, name: str, values) -> h5py.Dataset:
    return group.create_dataset(name, data=np.array(list(values), dtype=object),
                                dtype=h5py.string_dtype("utf-8"))


def _scaled(group: h5py.Group, scale_name: str, columns: dict, dtypes: dict) -> None:
    """Writes 1-D columns over the dimension scale `scale_name` (the first column)."""
    scale = group.create_dataset(scale_name, data=np.asarray(columns[scale_name], dtype=dtypes[scale_name]))
    scale.make_scale(scale_name)
    for name, values in columns.items():
        if name == scale_name:
            continue
        if dtypes[name] is str:
            node = _strings(group, name, values)
        else:
            node = group.create_dataset(name, data=np.asarray(values, dtype=dtypes[name]))
        node.dims[0].attach_scale(scale)


def write_results(path: str | Path, sweep: SyntheticSweep) -> Path:
    path = Path(path)
    cells = sweep.grid_trials()
    rows = []
    for trial, model_idx, strategy_idx, amount_idx, seed_idx in cells:
        if trial in sweep.omit_trials:
            continue
        row = dict(trial=trial, model_idx=model_idx, strategy_idx=strategy_idx,
                   fraction_idx=amount_idx, seed_idx=seed_idx, model=sweep.models[model_idx],
                   strategy=sweep.strategies[strategy_idx].label, stored_dtype="f32")
        row.update(planted_row(sweep, model_idx, strategy_idx, amount_idx, seed_idx))
        rows.append(row)
    dtypes = trial_dtypes(trial_columns(sweep))
    columns = {name: [row[name] for row in rows] for name in dtypes}
    job_text = "[job]\nname = synthetic\n"
    with h5py.File(path, "w") as h5:
        attrs = h5.attrs
        attrs["schema_version"] = SCHEMA_VERSION
        attrs["software_version"] = "0.1.0"
        attrs["git_commit"] = "0" * 40
        attrs["job_name"] = "synthetic"
        attrs["job_path"] = "/tmp/synthetic.ini"
        attrs["job_text"] = job_text
        attrs["job_sha256"] = "f" * 64
        attrs["job_seed"] = np.uint64(sweep.job_seed)
        attrs["command_line"] = "fracsweep run synthetic.ini"
        attrs["schedule"] = "dynamic (chunk 4)"
        attrs["mpi_size"] = np.int32(2)
        attrs["hostnames"] = "node1,node2"
        attrs["blis_version"] = "0.9.0"
        attrs["blis_kernels"] = "haswell"
        attrs["blis_kernels_selected_by"] = "default"
        attrs["blis_threads"] = np.int32(1)
        attrs["started_utc"] = "2026-11-26T05:03:13Z"
        attrs["finished_utc"] = "2026-11-26T05:04:13Z" if sweep.complete else ""
        attrs["n_trials"] = np.int64(len(cells))
        if sweep.site_recipe is not None:
            attrs["site_recipe"] = sweep.site_recipe
        attrs["n_trials_done"] = np.int64(len(rows))

        grid = h5.create_group("grid")
        n_models = len(sweep.models)
        _strings(grid, "model", sweep.models)
        _strings(grid, "model_path", [f"/models/{name}.bin" for name in sweep.models])
        _strings(grid, "model_format", ["llama2c-v0"] * n_models)
        grid.create_dataset("model_n_parameters", data=np.full(n_models, sweep.n_parameters, np.int64))
        _strings(grid, "strategy", [s.label for s in sweep.strategies])
        _strings(grid, "strategy_name", [s.name for s in sweep.strategies])
        _strings(grid, "strategy_scope", [s.scope for s in sweep.strategies])
        _strings(grid, "strategy_spec", [s.spec or s.name for s in sweep.strategies])
        grid.create_dataset("strategy_deterministic",
                            data=np.array([s.deterministic for s in sweep.strategies], np.int8))
        amounts = [sweep.amount(i) for i in range(len(sweep.fractions))]
        grid.create_dataset("fraction", data=np.array([a[0] for a in amounts], np.float64))
        grid.create_dataset("count", data=np.array([a[1] for a in amounts], np.int64))
        _strings(grid, "amount_label", [a[2] for a in amounts])
        grid.create_dataset("seed", data=np.array(sweep.seeds, np.int64))
        if sweep.probe_kinds:
            _strings(grid, "probe_kind", sweep.probe_kinds)

        trials = h5.create_group("trials")
        _scaled(trials, "trial", columns, dtypes)
        _describe_trials(trials, trial_columns(sweep))
        trials["status"].attrs["flag_values"] = np.array([0, 1], np.int32)
        trials["status"].attrs["flag_meanings"] = "ok nonfinite_outputs"
        table_dtype = np.dtype([(name, "S64" if kind is str else kind) for name, kind in dtypes.items()])
        table = np.zeros(len(rows), dtype=table_dtype)  # (n_rows) compound copy of /trials
        for name, kind in dtypes.items():
            table[name] = [value.encode() for value in columns[name]] if kind is str else columns[name]
        h5.create_dataset("trials_table", data=table)

        baseline = h5.create_group("baseline")
        probe_baselines = {}  # /baseline/probe_<kind>_rate, _logprob over the models
        for kind in sweep.probe_kinds:
            values = [sweep.baseline_probe(model, kind) for model in sweep.models]
            probe_baselines[f"probe_{kind}_rate"] = [rate for rate, _ in values]
            probe_baselines[f"probe_{kind}_logprob"] = [logprob for _, logprob in values]
        _scaled(baseline, "model_index", {
            "model_index": range(n_models), "model": sweep.models,
            "mean_nll": [sweep.baseline_nll] * n_models,
            "perplexity": [math.exp(sweep.baseline_nll)] * n_models,
            "accuracy": [sweep.baseline_accuracy] * n_models,
            "positions": [sweep.positions] * n_models, "nonfinite_positions": [0] * n_models,
            "greedy_length": [sweep.greedy_length] * n_models,
            "greedy_text": ["Once upon a time"] * n_models,
            **probe_baselines,
        }, {"model_index": np.int32, "model": str, "mean_nll": np.float64, "perplexity": np.float64,
            "accuracy": np.float64, "positions": np.int64, "nonfinite_positions": np.int64,
            "greedy_length": np.int64, "greedy_text": str,
            **{name: np.float64 for name in probe_baselines}})
        greedy = np.full((n_models, sweep.greedy_length), -1, np.int32)  # (M, G) padded ids
        greedy[:, :4] = [1, 403, 407, 261]
        baseline.create_dataset("greedy_ids", data=greedy)

        tensor_rows = []
        for model_idx in range(n_models):
            offset = 0
            for name, shape in sweep.tensors:
                count = math.prod(shape)
                tensor_rows.append((model_idx, name, offset, count, "x".join(map(str, shape))))
                offset += count
        _scaled(h5.create_group("tensors"), "tensor", {
            "tensor": range(len(tensor_rows)), "model_idx": [r[0] for r in tensor_rows],
            "name": [r[1] for r in tensor_rows], "offset": [r[2] for r in tensor_rows],
            "count": [r[3] for r in tensor_rows], "shape": [r[4] for r in tensor_rows],
        }, {"tensor": np.int64, "model_idx": np.int32, "name": str, "offset": np.int64,
            "count": np.int64, "shape": str})

        if sweep.sites:
            site_columns = {name: [] for name in ("trial", "site_rank", "offset", "tensor",
                                                  "index_in_tensor", "old_value", "new_value")}
            for trial in sorted(sweep.sites):
                record = sweep.sites[trial]
                n = len(record["offset"])
                site_columns["trial"] += [trial] * n
                site_columns["site_rank"] += list(range(n))
                for name in ("offset", "tensor", "index_in_tensor", "old_value", "new_value"):
                    site_columns[name] += list(record[name])
            site_columns = {"site": range(len(site_columns["trial"])), **site_columns}
            _scaled(h5.create_group("sites"), "site", site_columns, {
                "site": np.int64, "trial": np.int64, "site_rank": np.int64, "offset": np.int64,
                "tensor": str, "index_in_tensor": np.int64, "old_value": np.float32,
                "new_value": np.float32})
    return path
