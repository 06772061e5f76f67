"""fracsweep analysis toolkit: results files -> tables, statistics, figures and reports.

Modules: load (results file -> pandas / xarray), stats (curves with CIs), critical (f*),
claims (claim check), behaviour (probe curves, behaviour vs capability), delta (how much of a
fine-tune must be kept), figures, report, rng (the engine's keyed generator), sites (re-derive a
trial's perturbed sites), cli (the fracsweep-report and fracsweep-sites commands).
"""
__version__ = "0.1.0"
