"""Which parameters a trial perturbed, re-derived offline from the results file.

Recipe (include/fracsweep/perturb.hpp), for a trial with (model, strategy, seed, k):
  sites key text  "fracsweep-sites-v1|job_seed=<u64>|model=<name>|scope=<scope>|seed=<i64>"
  values key text "fracsweep-values-v1|job_seed=<u64>|model=<name>|strategy=<label>|seed=<i64>"
  in-scope index space: tensors matching the scope, in ascending offset, concatenated;
  sites: permutation_prefix(KeyedRng(key(sites text)), n_scope, k, lane 0), each in-scope index
         mapped to its offset in the model's flat parameter order; the prefix is the keyed
         Feistel permutation's (site recipe "feistel-v1", root attribute site_recipe) or, for
         files without that attribute, the sparse Fisher-Yates shuffle's ("fisher-yates");
         files of any other recipe are refused;
  values at site rank i come from the values stream V at counter i, lane 1 (see value_recipe).
The scope text is /grid/strategy_scope and the label /grid/strategy, exactly as stored.
Magnitude strategies pick the k largest |w|: deterministic, but they need the weights.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .load import Results
from .rng import SITE_PREFIXES, KeyedRng

SITES_LANE = 0
VALUES_LANE = 1


class SitesError(ValueError):
    """A trial whose sites cannot be listed; the message says why."""


# --- scope and strategy labels ---------------------------------------------------------------

def glob_match(pattern: str, name: str) -> bool:
    """'*' matches any run of characters, '?' exactly one; everything else literally."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Scope:
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Scope":
        """'include=a,b;exclude=c' (either part may be absent or empty; include defaults to *)."""
        parts = {"include": (), "exclude": ()}
        for part in filter(None, text.split(";")):
            key, separator, value = part.partition("=")
            if not separator or key.strip() not in parts:
                raise SitesError(f"scope {text!r}: expected 'include=...;exclude=...'")
            parts[key.strip()] = tuple(p for p in value.split(",") if p)
        return cls(parts["include"] or ("*",), parts["exclude"])

    def matches(self, tensor_name: str) -> bool:
        """The name rule: some include pattern and no exclude pattern."""
        return (any(glob_match(p, tensor_name) for p in self.include)
                and not any(glob_match(p, tensor_name) for p in self.exclude))

    def contains(self, tensor_name: str, is_buffer: bool = False) -> bool:
        """Scope::contains: a buffer (e.g. a batch-norm running statistic) only under an explicit
        include pattern; the default scope and include=* cover learned parameters only."""
        explicit = "*" not in self.include
        return self.matches(tensor_name) and (not is_buffer or explicit)


LABEL_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?:\((?P<params>[^()]*)\))?(?:\[(?P<scope>.*)\])?$")


def strategy_parameters(label: str) -> dict[str, str]:
    """'gaussian(sigma=0.1,relative=abs)[include=x]' -> {'sigma': '0.1', 'relative': 'abs'}."""
    match = LABEL_PATTERN.match(label)
    if not match:
        raise SitesError(f"strategy label {label!r} is not of the form name(key=value,...)[scope]")
    parameters = {}
    for item in filter(None, (match["params"] or "").split(",")):
        key, _, value = item.partition("=")
        parameters[key.strip()] = value.strip()
    return parameters


# --- values ----------------------------------------------------------------------------------

def flip_bits(values: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """float32 values with one bit each flipped, on the raw patterns (a Python float round trip
    would quiet signalling NaNs and change their bits)."""
    patterns = np.asarray(values, dtype=np.float32).view(np.uint32)
    return (patterns ^ (np.uint32(1) << np.asarray(bits, dtype=np.uint32))).view(np.float32)


@dataclass
class ValueRecipe:
    """What a strategy writes at each site rank: the random draw, and the new value when it
    can be computed from the old value alone (None when it needs tensor statistics)."""
    description: str
    draws: np.ndarray | None = None          # (k) per-site draw (normal, uniform or bit), or None
    draw_name: str = ""
    new_value: object = None                 # callable(old float32 array (k)) -> float32 (k)
    needs: str = ""                          # why new values are not computed offline


BIT_CLASSES = {"sign": (31, 0), "exponent-msb": (30, 0), "exponent": (23, 8), "mantissa": (0, 23),
               "any": (0, 32)}  # (first bit, number of bits to draw from; 0 = fixed bit)


def value_recipe(strategy_name: str, parameters: dict[str, str], values_rng: KeyedRng,
                 k: int) -> ValueRecipe:
    name = strategy_name.replace("_", "-")
    ranks = np.arange(k, dtype=np.uint64)
    if name == "zero":
        return ValueRecipe("set to 0", new_value=lambda old: np.zeros_like(old))
    if name == "signflip":
        return ValueRecipe("negated", new_value=lambda old: -old)
    if name == "scale":
        factor = float(parameters.get("factor", "nan"))
        return ValueRecipe(f"multiplied by {factor:g}",
                           new_value=lambda old: (old.astype(np.float64) * factor).astype(np.float32))
    if name == "bitflip":
        bit_class = parameters.get("bits", "any").replace("_", "-")
        explicit = parameters.get("bit")
        if explicit is None and bit_class.isdigit():
            explicit = bit_class
        if explicit is not None or bit_class == "explicit":
            bits = np.full(k, int(explicit if explicit is not None else -1), dtype=np.int64)
        elif bit_class in BIT_CLASSES:
            first, span = BIT_CLASSES[bit_class]
            bits = (np.full(k, first, dtype=np.int64) if span == 0 else
                    first + values_rng.below_array(span, ranks, VALUES_LANE).astype(np.int64))
        else:
            raise SitesError(f"bitflip bit class {bit_class!r} is not one of "
                             f"{', '.join(BIT_CLASSES)} or an explicit bit")
        if np.any((bits < 0) | (bits > 31)):
            raise SitesError(f"bitflip parameters {parameters} do not name a bit in 0..31")
        return ValueRecipe(f"bit flipped ({bit_class})", bits, "bit", lambda old: flip_bits(old, bits))
    if name == "gaussian":
        sigma = float(parameters.get("sigma", "nan"))
        relative = parameters.get("relative", "abs")
        normals = values_rng.normal_array(ranks, VALUES_LANE)
        if relative == "abs":
            return ValueRecipe(f"w + {sigma:g}·|w|·z", normals, "z",
                               lambda old: (old.astype(np.float64) + sigma * np.abs(old.astype(np.float64))
                                            * normals).astype(np.float32))
        if relative == "absolute":
            return ValueRecipe(f"w + {sigma:g}·z", normals, "z",
                               lambda old: (old.astype(np.float64) + sigma * normals).astype(np.float32))
        return ValueRecipe(f"w + {sigma:g}·std(tensor)·z", normals, "z",
                           needs="the tensor's standard deviation (needs the weights)")
    if name == "random-value":
        uniforms = values_rng.uniform01_array(ranks, VALUES_LANE)
        return ValueRecipe("min + u·(max − min) over the tensor's finite values", uniforms, "u",
                           needs="the tensor's min and max (needs the weights)")
    raise SitesError(f"strategy {strategy_name!r} has no value recipe in this toolkit")


# --- one trial -------------------------------------------------------------------------------

@dataclass
class TrialSites:
    trial: int
    model: str
    strategy: str
    seed: int
    k: int
    n_scope: int
    k_source: str            # where k came from
    sites_key_text: str
    values_key_text: str
    sites: pd.DataFrame      # site_rank, tensor, index_in_tensor, position, offset, [draw],
                             # [old_value, new_value (mirror), engine_new_value] when recorded
    recipe: ValueRecipe
    deterministic: bool
    recorded: pd.DataFrame | None = None  # the engine's /sites rows of this trial
    notes: list[str] = field(default_factory=list)


def sites_key_text(job_seed: int, model: str, scope: str, seed: int) -> str:
    return f"fracsweep-sites-v1|job_seed={job_seed}|model={model}|scope={scope}|seed={seed}"


def values_key_text(job_seed: int, model: str, strategy: str, seed: int) -> str:
    return f"fracsweep-values-v1|job_seed={job_seed}|model={model}|strategy={strategy}|seed={seed}"


def amount_sites(fraction: float, count: int, n_scope: int) -> int:
    """Amount::sites: round(f * N) (half away from zero) or the count, capped at N."""
    k = count if count >= 0 else int(math.floor(fraction * n_scope + 0.5))
    return min(k, n_scope)


def in_scope_tensors(tensors: pd.DataFrame, scope: Scope) -> pd.DataFrame:
    """The model's in-scope tensors in ascending offset, with `start`: in-scope elements before."""
    roles = tensors["role"] if "role" in tensors else ["parameter"] * len(tensors)
    chosen = tensors[[scope.contains(name, role == "buffer")
                      for name, role in zip(tensors["name"], roles)]].sort_values("offset")
    chosen = chosen.reset_index(drop=True)
    chosen["start"] = np.concatenate([[0], np.cumsum(chosen["count"].to_numpy())[:-1]]).astype(np.int64)
    return chosen


def locate(in_scope: pd.DataFrame, scope_indices: np.ndarray) -> pd.DataFrame:
    """Maps in-scope indices to (tensor, index in tensor, multi-index position, flat offset)."""
    starts = in_scope["start"].to_numpy()
    which = np.searchsorted(starts, scope_indices, side="right") - 1  # (k) tensor row per site
    index_in_tensor = scope_indices - starts[which]
    shapes = in_scope["shape"].tolist()
    positions = [_position(index, shapes[row]) for row, index in zip(which.tolist(), index_in_tensor.tolist())]
    return pd.DataFrame({"tensor": in_scope["name"].to_numpy()[which],
                         "index_in_tensor": index_in_tensor,
                         "position": positions,
                         "offset": in_scope["offset"].to_numpy()[which] + index_in_tensor})


def _position(index: int, shape_text: str) -> str:
    """Flat index -> '(row, column)' for a tensor of shape '64x64'."""
    shape = tuple(int(d) for d in shape_text.split("x"))
    return str(tuple(int(i) for i in np.unravel_index(int(index), shape)))


def site_prefix(results: Results):
    """The permutation-prefix function of the file's site recipe; SitesError for a recipe this
    toolkit does not implement (a newer engine's)."""
    recipe = results.site_recipe
    if recipe not in SITE_PREFIXES:
        raise SitesError(f"{results.path}: root attribute site_recipe is {recipe!r}, a site recipe "
                         f"this toolkit does not implement (it knows {', '.join(sorted(SITE_PREFIXES))}); "
                         f"use the analysis toolkit of the engine version that wrote the file")
    return SITE_PREFIXES[recipe]


def trial_sites(results: Results, trial_id: int) -> TrialSites:
    """Re-derives the sites (and, where possible, new values) of one trial."""
    prefix_of = site_prefix(results)
    if results.tensors is None:
        raise SitesError(f"{results.path}: no /tensors group, so sites cannot be mapped to tensors")
    expected = results.grid.enumerate_trials()
    if not 0 <= trial_id < len(expected):
        raise SitesError(f"trial {trial_id} is not in the grid (ids 0..{len(expected) - 1})")
    cell = expected.iloc[trial_id]
    model = results.grid.models["model"].iloc[cell["model_idx"]]
    strategy_row = results.grid.strategies.iloc[cell["strategy_idx"]]
    amount = results.grid.amounts.iloc[cell["fraction_idx"]]
    seed = int(results.grid.seeds[cell["seed_idx"]])
    job_seed = int(results.provenance["job_seed"])
    scope_text = strategy_row["strategy_scope"]
    tensors = results.tensors[results.tensors["model_idx"] == cell["model_idx"]]
    in_scope = in_scope_tensors(tensors, Scope.parse(scope_text))
    n_scope = int(in_scope["count"].sum())
    row = results.trials[results.trials["trial"] == trial_id]
    notes = []
    if len(row):
        k, k_source = int(row["k"].iloc[0]), "/trials"
        if int(row["n_scope"].iloc[0]) != n_scope:
            raise SitesError(f"trial {trial_id}: /trials/n_scope is {int(row['n_scope'].iloc[0])} but the "
                             f"tensors matching scope {scope_text!r} hold {n_scope} parameters")
    else:
        k = amount_sites(float(amount["fraction"]), int(amount["count"]), n_scope)
        k_source = "computed from the grid (trial missing from /trials)"
    recorded = None
    if results.sites is not None:
        recorded = results.sites[results.sites["trial"] == trial_id].sort_values("site_rank")
        recorded = recorded.reset_index(drop=True) if len(recorded) else None
    site_text = sites_key_text(job_seed, model, scope_text, seed)
    value_text = values_key_text(job_seed, model, strategy_row["strategy"], seed)
    if strategy_row["deterministic"]:
        recipe = ValueRecipe("the action named in the label, at the k largest |w|", needs="the weights")
        notes.append("magnitude strategies are deterministic: their sites are the k largest |w| "
                     "of the scope (ties: lower offset first), which needs the weights and is not "
                     "reproduced offline" + ("; the engine's record is shown" if recorded is not None else ""))
        table = pd.DataFrame(columns=["site_rank", "tensor", "index_in_tensor", "position", "offset"])
        if recorded is not None:
            shapes = dict(zip(tensors["name"], tensors["shape"]))
            table = recorded[["site_rank", "tensor", "index_in_tensor"]].assign(
                position=[_position(index, shapes[name]) for name, index in
                          zip(recorded["tensor"], recorded["index_in_tensor"])],
                offset=recorded["offset"])
            for name in ("old_value", "new_value"):
                if name in recorded:
                    table["engine_" + name if name == "new_value" else name] = recorded[name]
        return TrialSites(trial_id, model, strategy_row["strategy"], seed, k, n_scope, k_source,
                          site_text, value_text, table, recipe, True, recorded, notes)
    scope_indices = prefix_of(KeyedRng.from_text(site_text), n_scope, k, SITES_LANE)
    table = locate(in_scope, scope_indices)
    table.insert(0, "site_rank", np.arange(k, dtype=np.int64))
    recipe = value_recipe(strategy_row["strategy_name"], strategy_parameters(strategy_row["strategy"]),
                          KeyedRng.from_text(value_text), k)
    sixteen_bit = "dtype" in in_scope and bool((in_scope["dtype"] != "f32").any())
    if sixteen_bit and strategy_row["strategy_name"] not in ("zero", "signflip"):
        # The engine draws bits and rounds values on the stored f16/bf16 patterns there.
        recipe = ValueRecipe(recipe.description, needs="f16/bf16 tensors are perturbed on their 16-bit "
                             "patterns, which this mirror does not reproduce; the sites are exact")
    if recipe.draws is not None:
        table[recipe.draw_name] = recipe.draws
    if recorded is not None:
        if len(recorded) != k:
            notes.append(f"the engine recorded {len(recorded)} sites for this trial, the recipe gives {k}")
        if "old_value" in recorded:
            old = recorded["old_value"].to_numpy(dtype=np.float32)[:k]
            table["old_value"] = pd.Series(old, dtype=np.float32)
            if recipe.new_value is not None and len(old) == k:
                table["new_value"] = recipe.new_value(old)
            table["engine_new_value"] = pd.Series(recorded["new_value"].to_numpy(dtype=np.float32)[:k])
    if recipe.needs:
        notes.append(f"new values need {recipe.needs}; the random draw is shown")
    return TrialSites(trial_id, model, strategy_row["strategy"], seed, k, n_scope, k_source,
                      site_text, value_text, table, recipe, False, recorded, notes)


@dataclass
class RecordComparison:
    n_recorded: int
    n_mirror: int
    offsets_equal: int          # over the common prefix
    values_compared: int
    values_bitwise_equal: int
    max_ulp_difference: int

    @property
    def sites_match(self) -> bool:
        return self.n_recorded == self.n_mirror == self.offsets_equal


def compare_with_record(result: TrialSites) -> RecordComparison | None:
    """Mirror vs the engine's /sites record of the same trial (None when not recorded or when
    the strategy is deterministic, whose sites are not re-derived)."""
    if result.recorded is None or result.deterministic:
        return None
    n = min(len(result.recorded), len(result.sites))
    offsets_equal = int(np.count_nonzero(result.recorded["offset"].to_numpy()[:n]
                                         == result.sites["offset"].to_numpy()[:n]))
    counts = (len(result.recorded), len(result.sites), offsets_equal)
    if "new_value" not in result.sites:
        return RecordComparison(*counts, 0, 0, 0)
    mirror = result.sites["new_value"].to_numpy(dtype=np.float32)
    engine = result.sites["engine_new_value"].to_numpy(dtype=np.float32)
    equal = mirror.view(np.uint32) == engine.view(np.uint32)  # NaN payloads must agree too
    comparable = ~(np.isnan(mirror) | np.isnan(engine))
    ulps = np.abs(_ordered_bits(mirror[comparable]) - _ordered_bits(engine[comparable]))
    return RecordComparison(*counts, len(mirror), int(equal.sum()), int(ulps.max()) if ulps.size else 0)


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 bit patterns mapped to integers ordered like the floats (ulp distances)."""
    bits = values.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
