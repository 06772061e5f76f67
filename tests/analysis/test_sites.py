"""Site recipe (perturb.hpp) and fracsweep-sites, against a plain reference implementation.

The reference below shares only the generator with the mirror (itself tested against published
vectors in test_rng.py): it matches scopes with fnmatch, lists every in-scope offset, picks
from the whole list by the plain one-index permutation (reference_permutation.py; or, for the
legacy recipe, shuffles the whole list), and computes values one site at a time.
"""
import fnmatch
import math
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from fracsweep_analysis.load import load_results
from fracsweep_analysis.rng import KeyedRng, key_from_text
from fracsweep_analysis.sites import (Scope, compare_with_record, flip_bits, glob_match,
                                      in_scope_tensors, strategy_parameters, trial_sites)
from reference_permutation import reference_permute
from synthetic_results import DEFAULT_TENSORS, StrategyDef, SyntheticSweep, write_results

BIN = Path(__file__).resolve().parents[2] / "analysis" / "bin"
STRATEGIES = [
    StrategyDef("zero", "zero"),
    StrategyDef("bitflip(bits=exponent)[include=layers.*.attn.*;exclude=]", "bitflip",
                scope="include=layers.*.attn.*;exclude="),
    StrategyDef("gaussian(sigma=0.1,relative=abs)[include=layers.*;exclude=layers.1.*]", "gaussian",
                scope="include=layers.*;exclude=layers.1.*"),
    StrategyDef("signflip[include=tok_embeddings,norm_?inal;exclude=]", "signflip",
                scope="include=tok_embeddings,norm_?inal;exclude="),
    StrategyDef("magnitude(then=zero)", "magnitude", deterministic=True),
]
FRACTIONS = [0.01, 0.1]
SEEDS = [3, -7]


def fake_weight(offset: int) -> np.float32:
    return np.float32(0.05 * math.sin(0.37 * offset) + 0.001)


def reference_sites(job_seed: int, model: str, strategy: StrategyDef, seed: int, k: int,
                    recipe: str = "feistel-v1"):
    """(offsets, tensor names, index in tensor, new values) the plain way, sites drawn by
    `recipe`: the keyed Feistel permutation or the legacy full-list Fisher-Yates shuffle."""
    include, exclude = (part.split("=", 1)[1] for part in strategy.scope.split(";"))
    in_scope = []  # (offset, tensor name, index in tensor) of every in-scope parameter, model order
    offset = 0
    for name, shape in DEFAULT_TENSORS:
        count = math.prod(shape)
        chosen = any(fnmatch.fnmatchcase(name, p) for p in (include.split(",") if include else ["*"]))
        excluded = any(fnmatch.fnmatchcase(name, p) for p in exclude.split(",") if p)
        if chosen and not excluded:
            in_scope += [(offset + i, name, i) for i in range(count)]
        offset += count
    sites_rng = KeyedRng(key_from_text(f"fracsweep-sites-v1|job_seed={job_seed}|model={model}|"
                                       f"scope={strategy.scope}|seed={seed}"))
    order = list(range(len(in_scope)))
    if recipe == "fisher-yates":
        for i in range(k):
            j = i + sites_rng.below(len(order) - i, i, 0)
            order[i], order[j] = order[j], order[i]
    else:
        order = [reference_permute(sites_rng.key, len(in_scope), 0, i) for i in range(k)]
    values_rng = KeyedRng(key_from_text(f"fracsweep-values-v1|job_seed={job_seed}|model={model}|"
                                        f"strategy={strategy.label}|seed={seed}"))
    chosen_sites = [in_scope[position] for position in order[:k]]
    new_values = []
    for rank, (site_offset, _, _) in enumerate(chosen_sites):
        old = fake_weight(site_offset)
        if strategy.name == "zero":
            new = np.float32(0.0)
        elif strategy.name == "signflip":
            new = -old
        elif strategy.name == "bitflip":  # exponent: bit 23 + below(8), on the raw bits
            bit = 23 + values_rng.below(8, rank, 1)
            new = np.array([int(old.view(np.uint32)) ^ (1 << bit)], dtype=np.uint32).view(np.float32)[0]
        else:  # gaussian, relative=abs
            new = np.float32(float(old) + 0.1 * abs(float(old)) * values_rng.normal(rank, 1))
        new_values.append(new)
    return chosen_sites, new_values


def recorded_sweep(tamper: bool = False, recipe: str | None = "feistel-v1") -> SyntheticSweep:
    """The sweep with every random trial recorded as drawn by `recipe` (None: a file from before
    the site_recipe attribute, whose sites are Fisher-Yates)."""
    sweep = SyntheticSweep(strategies=STRATEGIES, fractions=FRACTIONS, seeds=SEEDS, site_recipe=recipe)
    records = {}
    for trial, _, strategy_idx, amount_idx, seed_idx in sweep.grid_trials():
        strategy = STRATEGIES[strategy_idx]
        if strategy.deterministic:
            continue
        scope_size = sum(math.prod(shape) for name, shape in DEFAULT_TENSORS
                         if Scope.parse(strategy.scope).contains(name))
        k = int(math.floor(FRACTIONS[amount_idx] * scope_size + 0.5))
        sites, new_values = reference_sites(sweep.job_seed, "tiny", strategy, SEEDS[seed_idx], k,
                                            recipe or "fisher-yates")
        records[trial] = {"offset": [s[0] for s in sites], "tensor": [s[1] for s in sites],
                          "index_in_tensor": [s[2] for s in sites],
                          "old_value": [fake_weight(s[0]) for s in sites], "new_value": new_values}
    if tamper:
        first = min(records)
        records[first]["offset"][1] += 1
    sweep.sites = records
    return sweep


def scope_n(strategy: StrategyDef) -> int:
    return sum(math.prod(shape) for name, shape in DEFAULT_TENSORS if Scope.parse(strategy.scope).contains(name))


def write_recorded(path: Path, recipe: str | None = "feistel-v1") -> Path:
    # The synthetic writer plants n_scope = all parameters; rewrite it per scope so /trials agrees.
    sweep = recorded_sweep(recipe=recipe)
    path = write_results(path, sweep)
    with h5py.File(path, "r+") as h5:
        strategy_idx = h5["trials/strategy_idx"][()]
        fraction_idx = h5["trials/fraction_idx"][()]
        n_scope = np.array([scope_n(STRATEGIES[s]) for s in strategy_idx])
        h5["trials/n_scope"][...] = n_scope
        h5["trials/k"][...] = np.floor(np.array(FRACTIONS)[fraction_idx] * n_scope + 0.5).astype(np.int64)
    return path


@pytest.fixture
def recorded_file(tmp_path):
    return write_recorded(tmp_path / "sites.h5")


def test_bit_flips_keep_nan_payloads():
    # 1.5 has exponent 0x7f: flipping bit 30 gives exponent 0xff with a mantissa, a NaN whose
    # exact bits (0x7fc00000 here) must survive; a signalling-NaN pattern too.
    values = np.array([1.5, 1.25, -0.0], dtype=np.float32)
    flipped = flip_bits(values, np.array([30, 30, 31]))
    assert flipped.view(np.uint32).tolist() == [0x7FC00000, 0x7FA00000, 0x00000000]


def test_glob_semantics():
    assert glob_match("layers.*.attn.*", "layers.10.attn.wq")
    assert glob_match("norm_?inal", "norm_final") and not glob_match("norm_?inal", "norm_fiinal")
    assert not glob_match("layers.*", "tok_embeddings")
    assert glob_match("a[1]", "a[1]")  # brackets are literal, not a character class


def test_scope_parsing():
    scope = Scope.parse("include=layers.*;exclude=layers.1.*")
    assert scope.contains("layers.0.ffn.w1") and not scope.contains("layers.1.ffn.w1")
    assert Scope.parse("include=*;exclude=") == Scope(("*",), ())
    assert Scope.parse("include=*") == Scope(("*",), ())


def test_buffers_are_in_scope_only_under_an_explicit_include():
    """The engine's Scope::contains with a tensor role (perturb.hpp in_scope)."""
    default, running = Scope.parse("include=*;exclude="), Scope.parse("include=*.running_*;exclude=*_var")
    assert default.contains("bn1.running_mean") and not default.contains("bn1.running_mean", is_buffer=True)
    assert running.contains("bn1.running_mean", is_buffer=True)
    assert not running.contains("bn1.running_var", is_buffer=True) and not running.contains("bn1.weight")
    tensors = pd.DataFrame({"name": ["bn1.weight", "bn1.running_mean", "fc.weight"], "offset": [0, 4, 8],
                            "count": [4, 4, 6], "role": ["parameter", "buffer", "parameter"]})
    assert list(in_scope_tensors(tensors, default)["name"]) == ["bn1.weight", "fc.weight"]
    assert list(in_scope_tensors(tensors, default)["start"]) == [0, 4]
    assert list(in_scope_tensors(tensors, running)["name"]) == ["bn1.running_mean"]
    # Files without a role column hold learned parameters only.
    assert len(in_scope_tensors(tensors.drop(columns="role"), default)) == 3


def test_strategy_parameters_from_labels():
    assert strategy_parameters("gaussian(sigma=0.1,relative=abs)[include=x]") == {"sigma": "0.1", "relative": "abs"}
    assert strategy_parameters("zero") == {}
    assert strategy_parameters("bitflip(bits=exponent-msb)") == {"bits": "exponent-msb"}


@pytest.mark.parametrize("recipe", ["feistel-v1", None])
def test_mirror_matches_the_reference_for_every_random_trial(tmp_path, recipe):
    results = load_results(write_recorded(tmp_path / "sites.h5", recipe))
    assert results.site_recipe == (recipe or "fisher-yates")
    checked = 0
    for trial, record in recorded_sweep(recipe=recipe).sites.items():
        listing = trial_sites(results, trial)
        assert listing.sites["offset"].tolist() == record["offset"]
        assert listing.sites["tensor"].tolist() == record["tensor"]
        assert listing.sites["index_in_tensor"].tolist() == record["index_in_tensor"]
        assert listing.sites["new_value"].to_numpy().view(np.uint32).tolist() == \
            np.array(record["new_value"], dtype=np.float32).view(np.uint32).tolist()
        comparison = compare_with_record(listing)
        assert comparison.sites_match and comparison.values_bitwise_equal == len(record["offset"])
        checked += 1
    assert checked == 4 * len(FRACTIONS) * len(SEEDS)


def test_positions_follow_the_tensor_shape(recorded_file):
    results = load_results(recorded_file)
    listing = trial_sites(results, 0)  # zero, whole model
    shapes = dict(DEFAULT_TENSORS)
    for row in listing.sites.itertuples():
        assert row.position == str(tuple(int(i) for i in np.unravel_index(row.index_in_tensor, shapes[row.tensor])))


def run_sites(*arguments):
    return subprocess.run([str(BIN / "fracsweep-sites"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_sites_command_lists_and_confirms_a_recorded_trial(recorded_file):
    bitflip_trial = next(t for t, _, s, _, _ in recorded_sweep().grid_trials() if s == 1)
    completed = run_sites(recorded_file, bitflip_trial, "--limit", "2")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "strategy   bitflip(bits=exponent)[include=layers.*.attn.*;exclude=]" in out
    assert "sites key  fracsweep-sites-v1|job_seed=20261126|model=tiny|scope=include=layers.*.attn.*;exclude=|seed=3" in out
    assert "(showing 2 of 5 sites" in out  # k = round(0.01 * 512 attention weights)
    assert "the mirror matches the engine" in out
    for column in ("site_rank", "tensor", "index_in_tensor", "position", "offset", "bit", "old_value", "new_value"):
        assert column in out


def test_sites_command_writes_csv(recorded_file, tmp_path):
    csv = tmp_path / "sites.csv"
    completed = run_sites(recorded_file, 1, "--csv", csv)
    assert completed.returncode == 0, completed.stderr
    assert len(csv.read_text().splitlines()) == 1 + 26  # header + k = round(0.01 * 2576) sites
    assert "offset" in csv.read_text().splitlines()[0]


def test_sites_command_flags_a_disagreeing_record(tmp_path):
    path = write_results(tmp_path / "tampered.h5", recorded_sweep(tamper=True))
    completed = run_sites(path, 0)
    assert completed.returncode == 1
    assert "DOES NOT MATCH" in completed.stdout


def test_the_recipes_draw_different_sites():
    # Same trials, same keys: the release that introduced feistel-v1 changed which sites a seed
    # picks, so reading a file with the wrong recipe would list wrong sites.
    feistel, legacy = recorded_sweep().sites, recorded_sweep(recipe=None).sites
    assert feistel.keys() == legacy.keys()
    assert all(feistel[t]["offset"] != legacy[t]["offset"] for t in feistel if len(feistel[t]["offset"]) > 2)


def test_sites_command_refuses_an_unknown_site_recipe(tmp_path):
    path = write_results(tmp_path / "future.h5", recorded_sweep(recipe="feistel-v9"))
    completed = run_sites(path, 0)
    assert completed.returncode == 3
    assert "site_recipe is 'feistel-v9'" in completed.stderr
    assert "does not implement" in completed.stderr and "feistel-v1" in completed.stderr


def test_magnitude_trials_are_explained_not_guessed(recorded_file):
    magnitude_trial = next(t for t, _, s, _, _ in recorded_sweep().grid_trials() if STRATEGIES[s].deterministic)
    completed = run_sites(recorded_file, magnitude_trial)
    assert completed.returncode == 0, completed.stderr
    assert "magnitude strategies are deterministic" in completed.stdout
    assert "needs the weights" in completed.stdout


def test_sites_command_rejects_unknown_trials_and_files(recorded_file, tmp_path):
    completed = run_sites(recorded_file, 10_000)
    assert completed.returncode == 3 and "trial 10000 is not in the grid" in completed.stderr
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"\x89HDF\r\n")
    completed = run_sites(bogus, 0)
    assert completed.returncode == 3 and "fracsweep-sites: error:" in completed.stderr
