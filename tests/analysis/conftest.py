"""Fixtures shared by the analysis tests: synthetic results files with planted answers."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# The toolkit runs from a clone (analysis/bin adds analysis/ to the path); so do its tests,
# with or without PYTHONPATH=analysis (ctest sets it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

from synthetic_results import Behaviour, StrategyDef, SyntheticSweep, write_results  # noqa: E402

# 4 points per decade from 0.01% to 56.2%, the shape of a real sweep's fraction axis.
LOG_FRACTIONS = [float(f) for f in 10.0 ** np.arange(-4.0, -0.01, 0.25)]


def standard_sweep(**overrides) -> SyntheticSweep:
    """Random strategies with planted f*, a deterministic one, a destroyed one, an unreached
    one, and a per-layer scope pair."""
    strategies = [
        StrategyDef("zero", "zero", f_star=0.01),
        StrategyDef("magnitude(then=zero)", "magnitude", deterministic=True, f_star=0.001, hill=3.0),
        StrategyDef("bitflip(bits=any)", "bitflip", f_star=0.003, destroyed_above=0.004),
        StrategyDef("scale(factor=0.9)", "scale", f_star=10.0),
        StrategyDef("gaussian(sigma=0.1,relative=abs)[include=layers.0.*;exclude=]", "gaussian",
                    scope="include=layers.0.*;exclude=", f_star=0.02),
        StrategyDef("gaussian(sigma=0.1,relative=abs)[include=layers.1.*;exclude=]", "gaussian",
                    scope="include=layers.1.*;exclude=", f_star=0.05),
    ]
    settings = dict(strategies=strategies, fractions=LOG_FRACTIONS, seeds=list(range(100, 112)))
    settings.update(overrides)
    return SyntheticSweep(**settings)


# 4 points per decade from 0.01% to 100%: 0.25 is not swept (17.8% and 31.6% bracket it).
BEHAVIOUR_FRACTIONS = [float(f) for f in 10.0 ** np.arange(-4.0, 0.01, 0.25)]
TUNED, BASE = "tuned", "base"
REVERT_RANDOM, REVERT_LARGEST = "delta(from=base,order=random)", "delta(from=base,order=largest)"
TRANSPLANT_RANDOM, TRANSPLANT_LARGEST = "delta(from=tuned,order=random)", "delta(from=tuned,order=largest)"


def behaviour_sweep(transplant_largest_f_b: float = 0.13, **overrides) -> SyntheticSweep:
    """A fine-tune (`tuned`, trigger rate 1) and its base (rate 0), probe kinds trigger and
    control (rate 0 in both), with planted behaviour and capability crossings:
      zero          behaviour at 0.1%, NLL x1.5 at 1%        -> behaviour first
      gaussian      behaviour at 3%, NLL at 0.1%             -> capability first
      bitflip sign  both at 0.24%, no seed noise             -> together (one grid interval)
      scale         neither crosses                          -> neither
      magnitude     behaviour at 0.04%, NLL at 0.12% (deterministic)
      bitflip exponent: non-finite outputs above 0.5%
      delta from=base on tuned (revert): random at 50%, largest at 20%
      delta from=tuned on base (transplant): random at 40%, largest at `transplant_largest_f_b`
    and every delta a no-op on its own donor."""
    strategies = [
        StrategyDef("zero", "zero", f_star=0.01),
        StrategyDef("gaussian(sigma=0.5,relative=abs)", "gaussian", f_star=0.001),
        StrategyDef("bitflip(bits=sign)", "bitflip", f_star=0.0024, noise_sd=0.0),
        StrategyDef("scale(factor=0.9)", "scale", f_star=10.0),
        StrategyDef("magnitude(then=zero)", "magnitude", deterministic=True, f_star=0.0012),
        StrategyDef("bitflip(bits=exponent)", "bitflip", f_star=0.002, destroyed_above=0.005),
        StrategyDef(REVERT_RANDOM, "delta", spec="delta from=base order=random", f_star=10.0, donor=BASE),
        StrategyDef(REVERT_LARGEST, "delta", spec="delta from=base order=largest", deterministic=True,
                    f_star=10.0, donor=BASE),
        StrategyDef(TRANSPLANT_RANDOM, "delta", spec="delta from=tuned order=random", f_star=10.0,
                    donor=TUNED),
        StrategyDef(TRANSPLANT_LARGEST, "delta", spec="delta from=tuned order=largest",
                    deterministic=True, f_star=10.0, donor=TUNED),
    ]
    behaviour = {
        (TUNED, "zero", "trigger"): Behaviour(0.001, noise_sd=0.1),
        (TUNED, "gaussian(sigma=0.5,relative=abs)", "trigger"): Behaviour(0.03, noise_sd=0.1),
        (TUNED, "bitflip(bits=sign)", "trigger"): Behaviour(0.0024),
        (TUNED, "magnitude(then=zero)", "trigger"): Behaviour(0.0004),
        (TUNED, "bitflip(bits=exponent)", "trigger"): Behaviour(0.1),
        (TUNED, REVERT_RANDOM, "trigger"): Behaviour(0.5, noise_sd=0.05),
        (TUNED, REVERT_LARGEST, "trigger"): Behaviour(0.2),
        (BASE, TRANSPLANT_RANDOM, "trigger"): Behaviour(0.4, towards=1.0, noise_sd=0.05, logprob_slope=39.0),
        (BASE, TRANSPLANT_LARGEST, "trigger"): Behaviour(transplant_largest_f_b, towards=1.0, logprob_slope=39.0),
    }
    settings = dict(strategies=strategies, fractions=BEHAVIOUR_FRACTIONS, seeds=list(range(10)),
                    models=[TUNED, BASE], probe_kinds=("trigger", "control"),
                    probe_baseline={(TUNED, "trigger"): (1.0, -0.05), (BASE, "trigger"): (0.0, -40.0),
                                    (TUNED, "control"): (0.0, -8.0), (BASE, "control"): (0.0, -44.0)},
                    behaviour=behaviour)
    settings.update(overrides)
    return SyntheticSweep(**settings)


@pytest.fixture
def make_results(tmp_path):
    """Writes a synthetic results file: make_results(sweep=None, name=...) -> path."""
    def make(sweep: SyntheticSweep | None = None, name: str = "results.h5"):
        return write_results(tmp_path / name, sweep or standard_sweep())
    return make


@pytest.fixture
def standard_file(make_results):
    return make_results()
