"""Figures: metric vs fraction (log axis), strategy x fraction heatmaps, scope sensitivity.

Matplotlib's object API only (no pyplot state). Colours are the Okabe-Ito palette, which stays
distinguishable for the common colour-vision deficiencies, and every strategy also gets its own
marker, so lines can be told apart in greyscale too. Each figure is written as PNG and SVG.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator

from . import formatting
from .critical import BELOW_RANGE, NOT_REACHED, Criterion
from .load import Results
from .metrics import metric_info
from .progress import Progress

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", "-.", ":")
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "svg.fonttype": "none",
         "axes.spines.top": False, "axes.spines.right": False}
DEFAULT_FORMATS = ("png", "svg")
PNG_DPI = 150
CLAIM_MARKER_DECADES = math.log10(2.0)  # mark a quoted fraction only on a point within 2x of it
HEATMAP_CMAP = "cividis"  # perceptually uniform and colour-vision-deficiency safe
NONFINITE_COLOUR = "#7f7f7f"


@dataclass
class FigureFile:
    stem: str
    title: str
    caption: str
    paths: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class StrategyStyle:
    colour: str
    marker: str
    linestyle: str


def strategy_styles(strategies: list[str]) -> dict[str, StrategyStyle]:
    """A fixed look per strategy (grid order), shared by every figure of a report."""
    styles = {}
    for position, strategy in enumerate(strategies):
        styles[strategy] = StrategyStyle(OKABE_ITO[position % len(OKABE_ITO)],
                                         MARKERS[position % len(MARKERS)],
                                         LINESTYLES[(position // len(OKABE_ITO)) % len(LINESTYLES)])
    return styles


def _wrap(label: str, width: int = 34) -> str:
    """Wraps long labels after spaces, ',' and ';' or before '(' and '[' (strategy labels have
    few spaces)."""
    pieces = re.findall(r"[(\[]?[^ ,;(\[]*[ ,;]?", label)
    lines, current = [], ""
    for piece in filter(None, pieces):
        if current and len(current) + len(piece) > width:
            lines.append(current.rstrip())
            current = ""
        current += piece
    lines.append(current.rstrip())
    return "\n".join(lines)


def _percent_axis(axis) -> None:
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: formatting.percent(value)))
    axis.set_xlabel("fraction of in-scope parameters perturbed (log scale)")


def _save(figure: Figure, out_dir: Path, stem: str, formats) -> list[Path]:
    paths = []
    for extension in formats:
        path = out_dir / f"{stem}.{extension}"
        figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight", facecolor="white")
        paths.append(path)
    return paths


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "item"


# --- metric vs fraction ----------------------------------------------------------------------

def curve_figure(curves: pd.DataFrame, model: str, metric: str, styles: dict[str, StrategyStyle],
                 claim_fractions=(), threshold: float | None = None,
                 baseline: float | None = None, n_seeds: int | None = None,
                 confidence: float = 0.95) -> Figure:
    """Median across seeds vs fraction, one line per strategy, band = bootstrap CI of the median.

    Non-finite medians (destroyed outputs) are drawn as open triangles on the top edge.
    """
    info = metric_info(metric)
    data = curves[(curves["model"] == model) & (curves["metric"] == metric)]
    figure = Figure(figsize=(10.5, 5.4), layout="constrained")
    axis = figure.add_subplot()
    _percent_axis(axis)
    finite_values = data[["median", "median_lo", "median_hi"]].to_numpy().ravel()
    finite_values = finite_values[np.isfinite(finite_values)]
    log_y = use_log_scale(info, finite_values)
    if log_y:
        axis.set_yscale("log", nonpositive="mask")
        finite_values = finite_values[finite_values > 0]
    top = _upper_limit(finite_values, info, log_y, baseline, threshold)
    any_nonfinite = False
    for strategy, group in data.groupby("strategy", sort=False):
        style = styles[strategy]
        group = group.sort_values("fraction")
        x = group["fraction"].to_numpy()
        median = group["median"].to_numpy()
        finite = np.isfinite(median)
        deterministic = group["n"].max() == 1
        label = _wrap(strategy + (" (deterministic)" if deterministic else ""))
        axis.plot(x[finite], median[finite], color=style.colour, marker=style.marker,
                  linestyle=style.linestyle, markersize=4.5, linewidth=1.8, label=label)
        if not deterministic:  # bands only where the interval is finite (it is in the tables)
            low, high = group["median_lo"].to_numpy(), group["median_hi"].to_numpy()
            axis.fill_between(x, low, high, where=np.isfinite(low) & np.isfinite(high),
                              color=style.colour, alpha=0.18, linewidth=0)
        if (~finite).any():
            any_nonfinite = True
            axis.plot(x[~finite], np.full((~finite).sum(), top), linestyle="none",
                      marker="^", markersize=8, markerfacecolor="white",
                      markeredgecolor=style.colour, markeredgewidth=1.6, clip_on=False)
        for quoted in claim_fractions:
            distance = np.abs(np.log10(x) - math.log10(quoted))
            nearest = int(np.argmin(distance))
            if finite[nearest] and distance[nearest] <= CLAIM_MARKER_DECADES:
                axis.plot(x[nearest], median[nearest], marker=style.marker, markersize=10,
                          markerfacecolor="none", markeredgecolor=style.colour, markeredgewidth=1.6)
    for quoted in claim_fractions:
        axis.axvline(quoted, color="#555555", linestyle=":", linewidth=1.2)
        axis.annotate(f"f = {formatting.percent(quoted)}", (quoted, 1.0), xycoords=("data", "axes fraction"),
                      xytext=(0, 8), textcoords="offset points", ha="center", va="bottom",
                      fontsize=9, color="#333333")
    if threshold is not None and math.isfinite(threshold):
        axis.axhline(threshold, color="#B00000", linestyle="--", linewidth=1.2,
                     label=_wrap(f"threshold for f* ({formatting.number(threshold)})"))
    if baseline is not None and math.isfinite(baseline):
        axis.axhline(baseline, color="#333333", linestyle="-.", linewidth=1.2,
                     label=f"unperturbed model ({formatting.number(baseline)})")
    if any_nonfinite:
        axis.plot([], [], linestyle="none", marker="^", markerfacecolor="white",
                  markeredgecolor="#333333", label="non-finite outputs (drawn at top edge)")
    _set_y_limits(axis, finite_values, info, log_y, top)
    axis.set_ylabel(_wrap(info.axis_label, 45))
    seeds_text = f"{n_seeds} seeds" if n_seeds else "seeds"
    axis.set_title(f"{model}: {info.label} vs fraction perturbed\n"
                   f"lines: median across {seeds_text}; bands: {confidence:.0%} bootstrap CI of the median",
                   loc="left", pad=24)
    axis.grid(True, which="major", color="#dddddd", linewidth=0.8)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def use_log_scale(info, values: np.ndarray) -> bool:
    """Log axis for metrics that span decades: always for KL and perplexity, and for losses
    whose finite values span more than two decades (bit flips reach 1e36 nats)."""
    if info.log_axis:
        return True
    if info.is_rate or info.name in ("greedy_match", "nonfinite_positions"):
        return False
    finite = values[np.isfinite(values)]
    return bool(finite.size) and bool((finite > 0).all()) and finite.max() / finite.min() > 100.0


def _upper_limit(values: np.ndarray, info, log_y: bool, baseline, threshold) -> float:
    references = [v for v in (baseline, threshold) if v is not None and math.isfinite(v)]
    pool = np.concatenate([values, references]) if references else values
    if info.is_rate:
        return 1.02
    if pool.size == 0:
        return 1.0
    high = float(pool.max())
    if log_y:  # headroom for the non-finite markers on the top edge
        return high * 6.0 if high > 0 else 1.0
    low = float(pool.min())
    return high + 0.1 * max(high - low, abs(high) * 0.05, 1e-9)


def _set_y_limits(axis, values: np.ndarray, info, log_y: bool, top: float) -> None:
    if info.is_rate:
        axis.set_ylim(-0.02, top)
    elif log_y:
        bottom = float(values.min()) / 2.0 if values.size else top / 1e3
        axis.set_ylim(bottom, top)
    else:
        bottom = float(values.min()) if values.size else 0.0
        if info.name in ("greedy_match", "nonfinite_positions"):
            bottom = min(bottom, 0.0)
        axis.set_ylim(bottom - 0.04 * (top - bottom), top)


# --- heatmap ---------------------------------------------------------------------------------

def heatmap_figure(curves: pd.DataFrame, model: str, metric: str) -> Figure:
    """Median of `metric` for every strategy (rows, grid order) x swept amount (columns)."""
    info = metric_info(metric)
    data = curves[(curves["model"] == model) & (curves["metric"] == metric)]
    strategies = list(dict.fromkeys(data["strategy"]))
    amounts = (data[["fraction_idx", "amount", "fraction"]].drop_duplicates("fraction_idx")
               .sort_values("fraction"))
    values = np.full((len(strategies), len(amounts)), np.nan)  # (S, F) median; NaN = no trials
    column_of = {idx: j for j, idx in enumerate(amounts["fraction_idx"])}
    for row in data.itertuples():
        values[strategies.index(row.strategy), column_of[row.fraction_idx]] = row.median
    labels = [_wrap(s, 40) for s in strategies]
    label_inches = 0.085 * max(len(line) for label in labels for line in label.split("\n"))
    figure = Figure(figsize=(min(3.2 + label_inches + 0.6 * len(amounts), 18.0), 1.8 + 0.5 * len(strategies)),
                    layout="constrained")
    axis = figure.add_subplot()
    _draw_heatmap(axis, figure, values, info)
    axis.set_xticks(range(len(amounts)), amounts["amount"], rotation=45, ha="right")
    axis.set_yticks(range(len(strategies)), labels)
    axis.set_xlabel("fraction of in-scope parameters perturbed")
    axis.set_title(f"{model}: median {info.label} by strategy and fraction", loc="left")
    return figure


def _draw_heatmap(axis, figure: Figure, values: np.ndarray, info) -> None:
    finite = values[np.isfinite(values)]
    log_scale = use_log_scale(info, finite)
    if info.is_rate:
        norm = mcolors.Normalize(vmin=0.0, vmax=1.0)
    elif log_scale and finite.size and (finite > 0).any():
        positive = finite[finite > 0]
        norm = mcolors.LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 10))
    else:
        norm = mcolors.Normalize(vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
    # Higher = better metrics keep "good" bright; losses are reversed so "destroyed" is dark too.
    cmap = matplotlib.colormaps[HEATMAP_CMAP if info.higher_is_better else HEATMAP_CMAP + "_r"].copy()
    cmap.set_bad("white")
    shown = np.where(np.isfinite(values), values, np.nan)
    if log_scale:
        shown = np.where(shown > 0, shown, np.nan)
    image = axis.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, norm=norm,
                        interpolation="nearest")
    colourbar = figure.colorbar(image, ax=axis, shrink=0.9)
    colourbar.set_label(_wrap(f"median {info.axis_label}", 30))
    n_rows, n_columns = values.shape
    annotate = n_columns <= 24 and n_rows <= 24
    for i in range(n_rows):
        for j in range(n_columns):
            value = values[i, j]
            if np.isinf(value):
                axis.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=NONFINITE_COLOUR,
                                         hatch="///", edgecolor="white", linewidth=0))
                axis.text(j, i, "inf", ha="center", va="center", fontsize=8, color="white")
            elif np.isnan(value):
                axis.text(j, i, "–", ha="center", va="center", fontsize=8, color="#555555")
            elif annotate:
                red, green, blue, _ = cmap(norm(value)) if value > 0 or not log_scale else (1, 1, 1, 1)
                luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
                axis.text(j, i, _short(value, info.is_rate), ha="center", va="center", fontsize=7.5,
                          color="black" if luminance > 0.5 else "white")


def _short(value: float, is_rate: bool) -> str:
    if is_rate and value >= 0.01:
        return f"{value:.2f}"
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.3g}"


# --- scope sensitivity -----------------------------------------------------------------------

SCOPE_SUFFIX = re.compile(r"^(?P<base>.*?)(?P<scope>\[[^\[\]]*\])?$")


def scope_groups(results: Results) -> dict[str, list[str]]:
    """Strategies that differ only by scope (the "[...]" suffix of the label): per-tensor or
    per-layer sweeps. Returns {base label: [strategy labels]} for groups of two or more."""
    groups: dict[str, list[str]] = {}
    for label in results.grid.strategies["strategy"]:
        base = SCOPE_SUFFIX.match(label)["base"]
        groups.setdefault(base, []).append(label)
    return {base: members for base, members in groups.items()
            if len(members) > 1 and len(set(_scopes(results, members))) > 1}


def scope_display(scope: str) -> str:
    """'include=layers.0.*;exclude=' -> 'layers.0.*'; exclusions as 'a except b'."""
    parts = dict(part.partition("=")[::2] for part in scope.split(";") if part)
    include = parts.get("include") or "*"
    exclude = parts.get("exclude")
    return f"{include} except {exclude}" if exclude else include


def _scopes(results: Results, strategies: list[str]) -> list[str]:
    table = results.grid.strategies.set_index("strategy")
    return [table.loc[s, "strategy_scope"] for s in strategies]


def sensitivity_figure(curves: pd.DataFrame, critical: pd.DataFrame, results: Results, model: str,
                       base: str, members: list[str], criterion: Criterion) -> Figure:
    """Left: median top-1 agreement per scope x fraction. Right: f* per scope with its CI."""
    scope_of = dict(zip(members, _scopes(results, members)))
    figure = Figure(figsize=(13.0, 2.9 + 0.55 * len(members)), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[3, 2], sharey=True)
    subset = curves[curves["strategy"].isin(members) & (curves["model"] == model)]
    amounts = subset[["fraction_idx", "amount", "fraction"]].drop_duplicates("fraction_idx").sort_values("fraction")
    info = metric_info(criterion.metric)
    values = np.full((len(members), len(amounts)), np.nan)  # (scopes, F)
    column_of = {idx: j for j, idx in enumerate(amounts["fraction_idx"])}
    for row in subset[subset["metric"] == criterion.metric].itertuples():
        values[members.index(row.strategy), column_of[row.fraction_idx]] = row.median
    _draw_heatmap(left, figure, values, info)
    left.set_xticks(range(len(amounts)), amounts["amount"], rotation=45, ha="right")
    left.set_yticks(range(len(members)), [_wrap(scope_display(scope_of[m]), 36) for m in members])
    left.set_xlabel("fraction of in-scope parameters perturbed")
    left.set_ylabel("scope (tensors perturbed)")
    left.set_title(f"median {info.label}", loc="left")

    rows = critical[(critical["model"] == model) & (critical["criterion"] == criterion.spec)].set_index("strategy")
    swept_min = float(amounts["fraction"].min())
    swept_max = float(amounts["fraction"].max())
    _percent_axis(right)
    right.set_xlim(swept_min / 2.0, swept_max * 2.0)
    for i, member in enumerate(members):
        if member not in rows.index:
            continue
        row = rows.loc[member]
        if row["status"] == NOT_REACHED:
            right.annotate("not reached", (swept_max, i), xytext=(4, 0), textcoords="offset points",
                           va="center", fontsize=9)
            right.plot([swept_max], [i], marker=">", color="#333333")
            continue
        estimate = swept_min if row["status"] == BELOW_RANGE else row["f_star"]
        low = swept_min / 2.0 if row["f_star_lo"] == 0 else row["f_star_lo"]
        high = swept_max * 2.0 if math.isinf(row["f_star_hi"]) else row["f_star_hi"]
        if math.isfinite(low) and math.isfinite(high):
            right.plot([low, high], [i, i], color="#0072B2", linewidth=2.2)
        right.plot([estimate], [i], marker="<" if row["status"] == BELOW_RANGE else "o",
                   color="#0072B2", markersize=7)
    right.axvspan(swept_min, swept_max, color="#f2f2f2", zorder=-1)
    right.set_title(f"f*: {criterion.describe()}\n(line: bootstrap CI; grey: swept range)", loc="left")
    right.grid(True, axis="x", color="#dddddd")
    figure.suptitle(f"{model}: sensitivity by scope — {base}", x=0.01, ha="left")
    return figure


# --- all figures of a report -----------------------------------------------------------------

FIGURE_PATTERNS = ("curve-*", "heatmap-*", "sensitivity-*", "behaviour-*")


def remove_old_figures(out_dir: Path) -> None:
    """Deletes figures an earlier report wrote into `out_dir`, so none outlives its data."""
    for pattern in FIGURE_PATTERNS:
        for path in out_dir.glob(pattern):
            if path.suffix in (".png", ".svg", ".pdf"):
                path.unlink()


def make_figures(results: Results, curves: pd.DataFrame, critical: pd.DataFrame,
                 criteria: list[Criterion], out_dir: Path, metrics, claim_fractions,
                 confidence: float, formats=DEFAULT_FORMATS,
                 progress: Progress | None = None) -> list[FigureFile]:
    progress = progress or Progress(enabled=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = strategy_styles(list(results.grid.strategies["strategy"]))
    models = list(results.grid.models["model"])
    available = set(curves["metric"])
    plotted = [m for m in metrics if m in available and _worth_plotting(results, m)]
    groups = scope_groups(results)
    progress.start("figures", len(models) * (2 * len(plotted) + len(groups)))
    n_seeds = len(results.grid.seeds)
    files = []
    with matplotlib.rc_context(STYLE):
        for model in models:
            for metric in plotted:
                info = metric_info(metric)
                threshold = next((c.threshold(results.baseline, model) for c in criteria
                                  if c.metric == metric), None)
                baseline = (float(results.baseline.loc[model, metric])
                            if results.baseline is not None and metric in results.baseline.columns else None)
                figure = curve_figure(curves, model, metric, styles, claim_fractions, threshold,
                                      baseline, n_seeds, confidence)
                stem = f"curve-{slug(model)}-{metric}"
                files.append(FigureFile(stem, f"{model}: {info.label} vs fraction",
                                        f"Median {info.label} across seeds at each swept fraction "
                                        f"(log axis); bands are {confidence:.0%} bootstrap CIs of the median, "
                                        f"left out where an interval reaches non-finite values; open "
                                        f"triangles on the top edge are non-finite medians; dotted "
                                        f"lines mark the quoted fractions.",
                                        _save(figure, out_dir, stem, formats)))
                progress.advance()
                figure = heatmap_figure(curves, model, metric)
                stem = f"heatmap-{slug(model)}-{metric}"
                files.append(FigureFile(stem, f"{model}: {info.label}, strategy × fraction",
                                        f"Median {info.label} per strategy and swept fraction; "
                                        f"hatched grey cells are non-finite (destroyed) medians, "
                                        f"'–' marks cells without trials.",
                                        _save(figure, out_dir, stem, formats)))
                progress.advance()
            for base, members in groups.items():
                figure = sensitivity_figure(curves, critical, results, model, base, members, criteria[0])
                stem = f"sensitivity-{slug(model)}-{slug(base)}"
                files.append(FigureFile(stem, f"{model}: sensitivity by scope, {base}",
                                        f"Per-scope view of strategy {base}: median "
                                        f"{metric_info(criteria[0].metric).label} and f* "
                                        f"({criteria[0].describe()}) for each scope.",
                                        _save(figure, out_dir, stem, formats)))
                progress.advance()
    progress.finish()
    return files


# --- behaviour probes ------------------------------------------------------------------------

CAPABILITY_PANELS = ("mean_nll", "top1_agreement")


def behaviour_figure(probe_curves: pd.DataFrame, curves: pd.DataFrame, model: str, kinds,
                     styles: dict[str, StrategyStyle], confidence: float = 0.95) -> Figure:
    """Per probe kind (columns): behaviour rate (top) and target log-prob (bottom) vs fraction,
    mean over seeds with its bootstrap CI as a band, the unperturbed value as a dash-dotted line;
    the last column shows general ability next to them (median mean NLL and top-1 agreement
    from `curves`, as in the curve figures). Non-finite log-prob means (a target row with
    non-finite logits in some seed) are open triangles on the bottom edge, non-finite NLL
    medians on the top edge."""
    capability = [metric for metric in CAPABILITY_PANELS if metric in set(curves["metric"])]
    n_columns = len(kinds) + (1 if capability else 0)
    figure = Figure(figsize=(4.3 * n_columns + 3.2, 7.4), layout="constrained")
    axes = figure.subplots(2, n_columns, squeeze=False, sharex=True)
    data = probe_curves[probe_curves["model"] == model]
    for column, kind in enumerate(kinds):
        for row, (quantity, info) in enumerate((("rate", kind.rate), ("logprob", kind.logprob))):
            axis = axes[row, column]
            panel = data[(data["kind"] == kind.kind) & (data["quantity"] == quantity)]
            _behaviour_panel(axis, panel, styles, "mean", quantity == "rate")
            unit = "fraction of prompts" if quantity == "rate" else info.unit
            name = "behaviour rate" if quantity == "rate" else "log p(target | prompt)"
            axis.set_ylabel(_wrap(f"{kind.kind}: {name} ({unit})", 40))
            axis.set_title(_wrap(info.label, 52), loc="left", fontsize=9)
    if capability:
        for row, metric in enumerate(capability):
            axis = axes[row, n_columns - 1]
            panel = curves[(curves["model"] == model) & (curves["metric"] == metric)]
            info = metric_info(metric)
            values = panel[["median", "median_lo", "median_hi"]].to_numpy().ravel()
            log_y = use_log_scale(info, values[np.isfinite(values)])  # bit flips reach 1e36 nats
            _behaviour_panel(axis, panel, styles, "median", info.is_rate, log_y)
            axis.set_ylabel(_wrap(info.axis_label, 40))
            axis.set_title("general ability (median across seeds)", loc="left", fontsize=9)
        for row in range(len(capability), 2):
            axes[row, n_columns - 1].set_visible(False)
    for (row, _), axis in np.ndenumerate(axes):
        if axis.get_visible():
            _percent_axis(axis)
            axis.grid(True, which="major", color="#dddddd", linewidth=0.8)
            if row == 0:
                axis.set_xlabel("")
    handles, labels = [], []
    for axis in axes.ravel():
        for handle, label in zip(*axis.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    axes[0, n_columns - 1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                                  frameon=False)
    figure.suptitle(f"{model}: behaviour probes vs fraction perturbed — lines: mean across seeds, "
                    f"bands: {confidence:.0%} bootstrap CI of the mean; dash-dotted: unperturbed",
                    x=0.01, ha="left")
    return figure


def _behaviour_panel(axis, panel: pd.DataFrame, styles: dict[str, StrategyStyle], centre: str,
                     unit_interval: bool, log_y: bool = False) -> None:
    """Lines per strategy of the `centre` column with its CI band, and the baseline line.
    Non-finite centres are open triangles: +inf (destroyed, for losses) on the top edge, -inf
    (an unreachable target's log-prob) on the bottom edge."""
    edge_markers = []  # (x, colour, +1 top / -1 bottom)
    if log_y:
        axis.set_yscale("log", nonpositive="mask")
    for strategy, group in panel.groupby("strategy", sort=False):
        style = styles[strategy]
        group = group.sort_values("fraction")
        x = group["fraction"].to_numpy()
        y = group[centre].to_numpy()
        finite = np.isfinite(y)
        deterministic = group["n"].max() == 1
        label = _wrap(strategy + (" (deterministic)" if deterministic else ""))
        axis.plot(x[finite], y[finite], color=style.colour, marker=style.marker,
                  linestyle=style.linestyle, markersize=4, linewidth=1.6, label=label)
        if not deterministic:
            low, high = group[f"{centre}_lo"].to_numpy(), group[f"{centre}_hi"].to_numpy()
            axis.fill_between(x, low, high, where=np.isfinite(low) & np.isfinite(high),
                              color=style.colour, alpha=0.15, linewidth=0)
        for sign in (1, -1):
            at_edge = np.isinf(y) & (np.sign(y) == sign)
            if at_edge.any():
                edge_markers.append((x[at_edge], style.colour, sign))
    baseline = panel["baseline"].dropna() if "baseline" in panel else pd.Series(dtype=float)
    if len(baseline) and math.isfinite(float(baseline.iloc[0])):
        axis.axhline(float(baseline.iloc[0]), color="#333333", linestyle="-.", linewidth=1.2,
                     label="unperturbed model")
    if unit_interval:
        axis.set_ylim(-0.04, 1.04)
    low_edge, high_edge = axis.get_ylim()
    for x, colour, sign in edge_markers:
        axis.plot(x, np.full(x.size, high_edge if sign > 0 else low_edge), linestyle="none",
                  marker="^" if sign > 0 else "v", markersize=7, markerfacecolor="white",
                  markeredgecolor=colour, clip_on=False)
    for sign, marker, edge in ((1, "^", "top"), (-1, "v", "bottom")):
        if any(entry[2] == sign for entry in edge_markers):
            axis.plot([], [], linestyle="none", marker=marker, markerfacecolor="white",
                      markeredgecolor="#333333", label=f"non-finite (drawn at the {edge} edge)")
    axis.set_ylim(low_edge, high_edge)


def make_behaviour_figures(results: Results, probe_curves: pd.DataFrame, curves: pd.DataFrame, kinds,
                           out_dir: Path, confidence: float, formats=DEFAULT_FORMATS,
                           progress: Progress | None = None) -> list[FigureFile]:
    """One behaviour figure per model (none when the file has no probe kinds)."""
    if not kinds:
        return []
    progress = progress or Progress(enabled=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = strategy_styles(list(results.grid.strategies["strategy"]))
    models = list(results.grid.models["model"])
    capability = curves.copy()
    if results.baseline is not None:
        capability["baseline"] = [float(results.baseline.loc[model, metric])
                                  if metric in results.baseline.columns else math.nan
                                  for model, metric in zip(capability["model"], capability["metric"])]
    progress.start("behaviour figures", len(models))
    files = []
    with matplotlib.rc_context(STYLE):
        for model in models:
            figure = behaviour_figure(probe_curves, capability, model, kinds, styles, confidence)
            stem = f"behaviour-{slug(model)}"
            files.append(FigureFile(
                stem, f"{model}: behaviour probes and general ability vs fraction",
                f"Per probe kind, the behaviour rate (fraction of prompts whose greedy continuation "
                f"begins with the target) and the mean log-probability of the target, as the mean "
                f"across seeds with {confidence:.0%} percentile-bootstrap CIs of the mean over seeds; "
                f"the right-hand column shows median mean NLL and top-1 agreement of the same "
                f"trials. Dash-dotted lines are the unperturbed model.",
                _save(figure, out_dir, stem, formats)))
            progress.advance()
    progress.finish()
    return files


def _worth_plotting(results: Results, metric: str) -> bool:
    """greedy_match only when a greedy continuation was evaluated."""
    if metric == "greedy_match":
        return bool((results.trials["greedy_length"] > 0).any())
    return True
