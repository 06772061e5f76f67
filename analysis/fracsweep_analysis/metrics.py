"""What each per-trial metric means: label, unit, direction, and how a non-finite value counts.

Definitions are the engine's (include/fracsweep/metrics.hpp). A trial whose outputs contain
NaN/Inf has NaN mean_nll / mean_kl / max_kl / perplexity: that is a real outcome (the
perturbation destroyed the model's behaviour), so every statistic here counts such a value as
the metric's worst value (+inf for losses and divergences) instead of dropping it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str            # axis / table label
    unit: str             # "" when dimensionless
    higher_is_better: bool
    worst: float          # value a NaN (destroyed behaviour) counts as
    is_rate: bool = False  # a fraction of evaluated positions (Wilson intervals apply)
    log_axis: bool = False  # spans decades: plot on a log axis

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def as_outcome(self, values: np.ndarray) -> np.ndarray:
        """Values with NaN replaced by the worst value (float64 copy)."""
        outcome = np.array(values, dtype=np.float64)
        outcome[np.isnan(outcome)] = self.worst
        return outcome


METRICS: dict[str, MetricInfo] = {info.name: info for info in (
    MetricInfo("top1_agreement", "top-1 agreement with unperturbed model", "fraction of tokens",
               higher_is_better=True, worst=0.0, is_rate=True),
    MetricInfo("accuracy", "next-token accuracy", "fraction of tokens",
               higher_is_better=True, worst=0.0, is_rate=True),
    MetricInfo("mean_nll", "mean negative log-likelihood", "nats/token",
               higher_is_better=False, worst=math.inf),
    MetricInfo("mean_nll_finite", "mean NLL over finite positions", "nats/token",
               higher_is_better=False, worst=math.inf),
    MetricInfo("perplexity", "perplexity", "",
               higher_is_better=False, worst=math.inf, log_axis=True),
    MetricInfo("mean_kl", "mean KL(unperturbed || perturbed)", "nats/token",
               higher_is_better=False, worst=math.inf, log_axis=True),
    MetricInfo("mean_kl_finite", "mean KL over finite positions", "nats/token",
               higher_is_better=False, worst=math.inf, log_axis=True),
    MetricInfo("max_kl", "max KL over positions", "nats",
               higher_is_better=False, worst=math.inf, log_axis=True),
    MetricInfo("nonfinite_positions", "positions with non-finite logits", "count",
               higher_is_better=False, worst=math.inf),
    MetricInfo("greedy_match", "greedy continuation tokens matching unperturbed", "tokens",
               higher_is_better=True, worst=0.0),
)}

# Float metrics the engine writes NaN into when outputs are non-finite.
NAN_WHEN_DESTROYED = ("mean_nll", "perplexity", "mean_kl", "max_kl")

# Metrics summarised by default (curves, report); figures use FIGURE_METRICS.
DEFAULT_METRICS = ("top1_agreement", "accuracy", "mean_nll", "perplexity", "mean_kl", "max_kl",
                   "nonfinite_positions", "greedy_match")
FIGURE_METRICS = ("top1_agreement", "mean_kl", "mean_nll", "accuracy", "greedy_match")


def metric_info(name: str) -> MetricInfo:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None
