"""Fixtures shared by the analysis tests: synthetic results files with planted answers."""
from __future__ import annotations

import numpy as np
import pytest

from synthetic_results import StrategyDef, SyntheticSweep, write_results

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


@pytest.fixture
def make_results(tmp_path):
    """Writes a synthetic results file: make_results(sweep=None, name=...) -> path."""
    def make(sweep: SyntheticSweep | None = None, name: str = "results.h5"):
        return write_results(tmp_path / name, sweep or standard_sweep())
    return make


@pytest.fixture
def standard_file(make_results):
    return make_results()
