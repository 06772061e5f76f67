"""What each per-trial metric means: label, unit, direction, and how a non-finite value counts.

Definitions are the engine's (include/fracsweep/metrics.hpp). A trial whose outputs contain
NaN/Inf has NaN mean_nll / mean_kl / max_kl / perplexity: that is a real outcome (the
perturbation destroyed the model's behaviour), so every statistic here counts such a value as
the metric's worst value (+inf for losses and divergences) instead of dropping it.
"""
from __future__ import annotations

import math
import re
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


# Behaviour-probe columns (include/fracsweep/io/trial_columns.hpp, probe_column_templates): two
# per probe kind, present only in files of jobs with [eval] probes.
PROBE_COLUMN = re.compile(r"^probe_(?P<kind>[A-Za-z0-9_]+)_(?P<quantity>rate|logprob)$")
PROBE_QUANTITIES = ("rate", "logprob")


def probe_column(name: str) -> tuple[str, str] | None:
    """'probe_trigger_rate' -> ('trigger', 'rate'); None for other names."""
    match = PROBE_COLUMN.match(name)
    return (match["kind"], match["quantity"]) if match else None


def probe_metric_info(name: str, units: str | None = None, long_name: str | None = None) -> MetricInfo:
    """A probe column as a metric. `units` and `long_name` are the file's own attributes of the
    column (trial_columns.hpp); without them, the schema's: rate '1', log-prob 'nats'.

    A rate is the fraction of a kind's prompts whose greedy continuation begins with the target:
    never NaN (a prompt with non-finite logits does not behave). The log-prob is NaN when a
    target row's logits are non-finite, which counts as -inf (the target is unreachable)."""
    kind, quantity = probe_column(name) or (None, None)
    if kind is None:
        raise ValueError(f"{name!r} is not a probe column (probe_<kind>_rate or probe_<kind>_logprob)")
    if quantity == "rate":
        unit = "fraction of prompts" if units in (None, "1", "") else units
        return MetricInfo(name, long_name or f"{kind} probe behaviour rate", unit,
                          higher_is_better=True, worst=0.0)
    unit = "nats" if units is None else units
    return MetricInfo(name, long_name or f"mean log p(target | prompt) of the {kind} probes", unit,
                      higher_is_better=True, worst=-math.inf)


def metric_info(name: str) -> MetricInfo:
    if name in METRICS:
        return METRICS[name]
    if probe_column(name):
        return probe_metric_info(name)
    raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)} and the probe "
                     f"columns probe_<kind>_rate, probe_<kind>_logprob of files with probes")
