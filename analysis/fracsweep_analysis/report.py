"""The report: Markdown and HTML with the same content, figures, and machine-readable tables.

    out_dir/report.md, report.html      claim check, f*, figures, data quality, methods, provenance
    out_dir/figures/*.png, *.svg
    out_dir/tables/curves.csv           every (model, strategy, metric, amount) summary
    out_dir/tables/critical.csv         f* for every criterion
    out_dir/tables/claims.csv           the claim check in long form
    out_dir/tables/missing_trials.csv   when the file is partial
  when the file has behaviour-probe columns (jobs with [eval] probes):
    out_dir/figures/behaviour-<model>.*            probe curves next to general ability
    out_dir/tables/behaviour_curves.csv            probe rate / log-prob per amount, mean [CI]
    out_dir/tables/behaviour_vs_capability.csv     which breaks first, per model x strategy x kind
    out_dir/tables/delta.csv, delta_keep.csv       fine-tune deltas (delta strategies only)
"""
from __future__ import annotations

import datetime
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import __version__, formatting
from .behaviour import (BEHAVIOUR_FACTOR, CAPABILITY_CRITERION, NO_BEHAVIOUR, NO_CHANGE,
                        ProbeKind, behaviour_vs_capability, probe_curve_tables, probe_curves,
                        probe_kinds, versus_table)
from .claims import DEFAULT_CLAIM_FRACTIONS, claim_check, claim_tables
from .critical import (DEFAULT_CRITERIA, Criterion, critical_fractions, describe_f_star,
                       fraction_text)
from .delta import DEFAULT_KEEP_FRACTION, delta_analysis, delta_table, keep_check, swept_points
from .figures import (DEFAULT_FORMATS, FigureFile, make_behaviour_figures, make_figures,
                      remove_old_figures, slug)
from .load import Results, ResultsFileError, load_results
from .metrics import DEFAULT_METRICS, FIGURE_METRICS
from .progress import Progress
from .stats import BootstrapSettings, summarise_curves


@dataclass(frozen=True)
class ReportSettings:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    figure_metrics: tuple[str, ...] = FIGURE_METRICS
    criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA
    claim_fractions: tuple[float, ...] = DEFAULT_CLAIM_FRACTIONS
    bootstrap: BootstrapSettings = BootstrapSettings()
    formats: tuple[str, ...] = DEFAULT_FORMATS
    figures: bool = True
    keep_fraction: float = DEFAULT_KEEP_FRACTION  # "does keeping this much of a fine-tune suffice?"


# --- a small document model rendered twice -------------------------------------------------------

@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    frame: pd.DataFrame  # cells already formatted as text
    caption: str = ""


@dataclass
class Image:
    source: str          # relative path of the PNG
    alt: str
    caption: str
    alternatives: list[str] = field(default_factory=list)  # other formats (relative paths)


@dataclass
class Code:
    text: str


MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _md(text: str) -> str:
    return str(text).translate(MARKDOWN_SPECIAL)


def render_markdown(blocks: list) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _md(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [_md(block.text), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_md(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [_md(block.caption), ""]
            header = [_md(c) for c in block.frame.columns]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for row in block.frame.itertuples(index=False):
                lines.append("| " + " | ".join(_md(cell).replace("\n", " ") for cell in row) + " |")
            lines.append("")
        elif isinstance(block, Image):
            links = " ".join(f"[{Path(a).suffix[1:].upper()}]({a})" for a in block.alternatives)
            lines += [f"![{_md(block.alt)}]({block.source})", "",
                      _md(block.caption) + (f" {links}" if links else ""), ""]
        elif isinstance(block, Code):
            fence = "~~~~" if "```" in block.text else "```"
            lines += [fence, block.text.rstrip("\n"), fence, ""]
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #1a1a1a; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #333; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.88em; }
.caption { font-size: 0.92em; color: #333; margin-bottom: 0.2em; }
"""


def render_html(blocks: list, title: str) -> str:
    escape = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(title)}</title><style>{HTML_STYLE}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            if block.caption:
                parts.append(f'<p class="caption">{escape(block.caption)}</p>')
            header = "".join(f"<th>{escape(str(c))}</th>" for c in block.frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>"
                           for row in block.frame.itertuples(index=False))
            parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            links = " ".join(f'<a href="{escape(a)}">{escape(Path(a).suffix[1:].upper())}</a>'
                             for a in block.alternatives)
            parts.append(f'<figure><img src="{escape(block.source)}" alt="{escape(block.alt)}">'
                         f"<figcaption>{escape(block.caption)} {links}</figcaption></figure>")
        elif isinstance(block, Code):
            parts.append(f"<pre>{escape(block.text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- analysis -> blocks ----------------------------------------------------------------------------

@dataclass
class ReportOutputs:
    markdown: Path
    html: Path
    figures: list[FigureFile]
    tables: dict[str, Path]


@dataclass
class BehaviourAnalysis:
    """The behaviour part of a report (files with probe columns)."""
    kinds: list[ProbeKind]
    curves: pd.DataFrame   # behaviour.probe_curves
    versus: pd.DataFrame   # behaviour.behaviour_vs_capability
    delta: pd.DataFrame    # delta.delta_analysis (empty without delta strategies)
    keep: pd.DataFrame     # delta.keep_check
    figures: list[FigureFile] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {"behaviour_curves": self.curves, "behaviour_vs_capability": self.versus}
        if len(self.delta):
            keep = self.keep.copy()
            keep["points"] = ["; ".join(f"f={p[0]:.6g}: mean {p[1]:.6g} [{p[2]:.6g}, {p[3]:.6g}], "
                                        f"median {p[4]:.6g}, n={p[5]}" for p in points)
                              for points in keep["points"]]
            tables.update(delta=self.delta, delta_keep=keep)
        return tables


def analyse_behaviour(results: Results, critical: pd.DataFrame, settings: ReportSettings,
                      progress: Progress) -> BehaviourAnalysis | None:
    """None when the file has no probe columns (older files, jobs without [eval] probes)."""
    kinds = probe_kinds(results)
    if not kinds:
        return None
    curves = probe_curves(results, kinds, settings.bootstrap, progress)
    versus = behaviour_vs_capability(results, kinds, settings.bootstrap, critical, progress)
    delta = delta_analysis(results, kinds, settings.bootstrap, progress)
    keep = keep_check(results, delta, curves, settings.keep_fraction)
    return BehaviourAnalysis(kinds, curves, versus, delta, keep)


def _check_criteria(results: Results, criteria) -> None:
    for criterion in criteria:
        if criterion.metric not in results.trials.columns:
            raise ResultsFileError(results.path, f"criterion '{criterion.spec}': the file has no "
                                                 f"/trials column {criterion.metric}")


def write_report(results_path: str | Path, out_dir: str | Path,
                 settings: ReportSettings = ReportSettings(),
                 progress: Progress | None = None) -> ReportOutputs:
    progress = progress or Progress(enabled=False)
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    results = load_results(results_path, progress)
    _check_criteria(results, settings.criteria)
    curves = summarise_curves(results, settings.metrics, settings.bootstrap, progress)
    critical = critical_fractions(results, settings.criteria, settings.bootstrap, progress)
    claims, points = claim_check(results, curves, settings.claim_fractions)
    behaviour = analyse_behaviour(results, critical, settings, progress)
    if (out_dir / "figures").is_dir():
        remove_old_figures(out_dir / "figures")
    figures = []
    if settings.figures:
        figure_metrics = [m for m in settings.figure_metrics if m in settings.metrics]
        figures = make_figures(results, curves, critical, list(settings.criteria), out_dir / "figures",
                               figure_metrics, settings.claim_fractions, settings.bootstrap.confidence,
                               settings.formats, progress)
        if behaviour is not None:
            behaviour.figures = make_behaviour_figures(
                results, behaviour.curves, curves, behaviour.kinds, out_dir / "figures",
                settings.bootstrap.confidence, settings.formats, progress)
    tables = {"curves": curves, "critical": critical, "claims": claims}
    if behaviour is not None:
        tables.update(behaviour.tables())
    if results.missing.count:
        tables["missing_trials"] = results.missing.trials
    table_paths = {}
    for name, frame in tables.items():
        table_paths[name] = out_dir / "tables" / f"{name}.csv"
        frame.to_csv(table_paths[name], index=False)
    blocks = report_blocks(results, curves, critical, claims, points, figures, settings, out_dir,
                           behaviour)
    title = f"fracsweep report: {results.provenance.get('job_name', results.path.name)}"
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    markdown_path.write_text(render_markdown(blocks), encoding="utf-8")
    html_path.write_text(render_html(blocks, title), encoding="utf-8")
    all_figures = figures + (behaviour.figures if behaviour is not None else [])
    return ReportOutputs(markdown_path, html_path, all_figures, table_paths)


def report_blocks(results: Results, curves: pd.DataFrame, critical: pd.DataFrame,
                  claims: pd.DataFrame, points, figures: list[FigureFile],
                  settings: ReportSettings, out_dir: Path,
                  behaviour: BehaviourAnalysis | None = None) -> list:
    provenance = results.provenance
    primary = settings.criteria[0]
    confidence = f"{settings.bootstrap.confidence:.0%}"
    blocks: list = [Heading(1, f"fracsweep report: {provenance.get('job_name', results.path.name)}")]
    grid = results.grid
    n_models, n_strategies, n_amounts, n_seeds = grid.shape
    fractions = grid.amounts["fraction"].dropna()
    range_text = (f"{formatting.percent(fractions.min())} to {formatting.percent(fractions.max())}"
                  if len(fractions) else "counts only")
    blocks.append(Bullets([
        f"Results file: {results.path} (schema {provenance.get('schema_version')})",
        f"Trials: {len(results.trials)} of {results.missing.n_expected} in the grid"
        + ("" if results.is_complete else f" — PARTIAL: {results.missing.count} missing (see Data quality)"),
        f"Grid: {n_models} model(s) × {n_strategies} strategies × {n_amounts} amounts ({range_text}) "
        f"× {n_seeds} seeds",
        f"Analysis: fracsweep-analysis {__version__}, {settings.bootstrap.resamples} bootstrap resamples, "
        f"bootstrap seed {settings.bootstrap.seed}, {confidence} intervals; generated "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
    ]))

    blocks.append(Heading(2, "Claim check"))
    point_text = "; ".join(_claim_point_text(p) for p in points) or "the grid has no fraction entries"
    blocks.append(Paragraph(
        f"Behaviour change at the fractions quoted in public debate ({point_text}). Cells: median "
        f"across seeds [{confidence} bootstrap CI over seeds]; deterministic strategies have one "
        f"trial, hence no interval. Top-1 agreement is the fraction of evaluated tokens whose "
        f"argmax is unchanged; ΔNLL is the change in mean negative log-likelihood from the "
        f"unperturbed model (nats/token, 'non-finite' when outputs became NaN/Inf). f* is the "
        f"smallest fraction at which {primary.describe()}."))
    for model, table in claim_tables(claims, points, critical, primary.spec).items():
        baseline = _baseline_text(results, model)
        blocks.append(Table(table, f"Model {model}{baseline}"))

    blocks.append(Heading(2, "Critical fraction f*"))
    if results.adaptive is not None:
        blocks.append(Paragraph(
            f"Adaptive search: each seed's search bracketed f* between two adjacent fractions of "
            f"a log-spaced lattice; f* is the median over seeds of each bracket's geometric "
            f"midpoint (log space), [{confidence} bootstrap CI over seeds]. Seeds settled at or "
            f"below the smallest fraction, or above the largest, count as such, never "
            f"extrapolated. The criteria are those the searches ran for ([sweep] adaptive)."))
    else:
        blocks.append(Paragraph(
            f"f* is where the median-across-seeds curve first crosses the threshold, interpolated in "
            f"log f; [{confidence} bootstrap CI over seeds]. 'not reached' and 'at or below the "
            f"smallest swept fraction' are reported as such, never extrapolated. 'seeds crossed' counts "
            f"seeds whose own curve crosses within the swept range (at its smallest fraction included). The logistic column fits "
            f"P(trial past threshold) against log f and gives the fraction where it is 1/2, with a Wald "
            f"interval, where that fit converges."))
    blocks.append(Table(_critical_display(critical)))

    if behaviour is not None:
        blocks += _behaviour_blocks(results, behaviour, settings, out_dir)
    # Imported here: attacks.py builds its section from this module's document classes.
    from .attacks import attack_blocks
    blocks += attack_blocks(results)  # nothing without deliberate-change strategies

    if figures:
        blocks.append(Heading(2, "Figures"))
        shown_format = next(f for f in (".png", ".svg", ".pdf") if any(p.suffix == f for p in figures[0].paths))
        other_formats = sorted({p.suffix[1:].upper() for p in figures[0].paths} - {shown_format[1:].upper()})
        if other_formats:
            blocks.append(Paragraph(f"Each figure is also available as {', '.join(other_formats)} "
                                    f"(links under the image)."))
        for figure in figures:
            source = next(p for p in figure.paths if p.suffix == shown_format)
            blocks.append(Heading(3, figure.title))
            blocks.append(Image(_relative(source, out_dir), figure.title, figure.caption,
                                [_relative(p, out_dir) for p in figure.paths if p != source]))

    blocks += _data_quality_blocks(results, curves)
    blocks += _methods_blocks(settings, behaviour)
    blocks += _provenance_blocks(results)
    return blocks


def _image_blocks(figure: FigureFile, out_dir: Path) -> list:
    shown_format = next(f for f in (".png", ".svg", ".pdf") if any(p.suffix == f for p in figure.paths))
    source = next(p for p in figure.paths if p.suffix == shown_format)
    return [Image(_relative(source, out_dir), figure.title, figure.caption,
                  [_relative(p, out_dir) for p in figure.paths if p != source])]


def _behaviour_blocks(results: Results, behaviour: BehaviourAnalysis, settings: ReportSettings,
                      out_dir: Path) -> list:
    """Behaviour probes, behaviour vs capability and, with delta strategies, the fine-tune delta."""
    confidence = f"{settings.bootstrap.confidence:.0%}"
    kinds = behaviour.kinds
    blocks: list = [Heading(2, "Behaviour probes")]
    meanings = "; ".join(f"{kind.rate.name}: {kind.rate.label}; {kind.logprob.name}: "
                         f"{kind.logprob.label} ({kind.logprob.unit})" for kind in kinds)
    blocks.append(Paragraph(
        f"Probe kinds in the file: {', '.join(kind.kind for kind in kinds)}. Columns ({meanings}). "
        f"Cells: mean across seeds [{confidence} percentile bootstrap CI of the mean over seeds, "
        f"{settings.bootstrap.resamples} resamples]; deterministic strategies have one trial per "
        f"fraction, hence no interval. Log-probabilities, medians and every cell are in "
        f"tables/behaviour_curves.csv."))
    baseline_rows = []
    for model in results.grid.models["model"]:
        row = {"model": model}
        for kind in kinds:
            for info, digits in ((kind.rate, 3), (kind.logprob, 4)):
                value = results.baseline.loc[model, info.name] if (
                    results.baseline is not None and info.name in results.baseline.columns) else float("nan")
                row[info.name] = formatting.number(value, digits)
        baseline_rows.append(row)
    blocks.append(Table(pd.DataFrame(baseline_rows), "Unperturbed models (/baseline)"))
    figures = {figure.stem: figure for figure in behaviour.figures}
    tables = probe_curve_tables(behaviour.curves)
    for model in results.grid.models["model"]:
        blocks.append(Heading(3, f"Model {model}"))
        figure = figures.get(f"behaviour-{slug(model)}")
        if figure is not None:
            blocks += _image_blocks(figure, out_dir)
        if model in tables:
            blocks.append(Table(tables[model], f"{model}: behaviour rate (fraction of prompts whose "
                                               f"greedy continuation begins with the target), mean "
                                               f"across seeds [{confidence} CI] per swept fraction"))

    blocks.append(Heading(2, "Behaviour vs capability"))
    blocks.append(Paragraph(
        f"Per model, strategy and probe kind: the smallest fraction at which the behaviour rate "
        f"falls below {BEHAVIOUR_FACTOR:.0%} of the model's unperturbed rate, next to the smallest "
        f"at which {CAPABILITY_CRITERION.describe()}. Both are critical fractions computed as in "
        f"'Critical fraction f*' (first crossing of the median-across-seeds curve, interpolated in "
        f"log f, [{confidence} bootstrap CI over seeds]), followed by the swept fractions between "
        f"which the crossing happens. 'first': 'together' when both are first past their "
        f"thresholds at the same swept fraction (the grid cannot order them) or their intervals "
        f"overlap; otherwise the one whose interval lies wholly below the other's; 'neither' when "
        f"no threshold is crossed within the swept range."))
    table = versus_table(behaviour.versus)
    if len(table):
        blocks.append(Table(table))
    else:
        blocks.append(Paragraph("No model shows a probed behaviour at baseline (every baseline rate is 0)."))
    left_out = []
    versus = behaviour.versus
    for verdict, reason in ((NO_BEHAVIOUR, "baseline rate 0, nothing to lose"),
                            (NO_CHANGE, "the strategy changes no stored value of this model "
                                        "(k_changed = 0: a delta toward the model itself)")):
        cells = versus[versus["first"] == verdict]
        if len(cells):
            pairs = sorted({f"{row.model} / {row.kind if verdict == NO_BEHAVIOUR else row.strategy}"
                            for row in cells.itertuples()})
            left_out.append(f"{reason}: {', '.join(pairs)}")
    if left_out:
        blocks.append(Paragraph("Left out of the table (in tables/behaviour_vs_capability.csv): "
                                + "; ".join(left_out) + "."))
    if len(behaviour.delta):
        blocks += _delta_blocks(results, behaviour, settings)
    return blocks


def _delta_blocks(results: Results, behaviour: BehaviourAnalysis, settings: ReportSettings) -> list:
    confidence = f"{settings.bootstrap.confidence:.0%}"
    blocks: list = [Heading(2, "Fine-tune delta: how much must be kept")]
    blocks.append(Paragraph(
        f"delta strategies move a fraction f of the model's values to another checkpoint's. Per "
        f"probe kind, the checkpoint with the higher unperturbed rate is the one with the "
        f"behaviour (the tuned one). On the tuned model, delta from=OTHER reverts f of the "
        f"fine-tune (1 − f is kept); on the other model, delta from=TUNED transplants f of it (f is "
        f"kept). The behaviour counts as present while the rate is above {BEHAVIOUR_FACTOR:.0%} of "
        f"the tuned model's unperturbed rate. The crossing is the critical fraction of the median "
        f"across seeds [{confidence} bootstrap CI over seeds]; order=largest is deterministic (one "
        f"trial per fraction, no interval). order=largest moves the largest |Δ| first: a revert "
        f"keeps the smallest changes, a transplant the largest. Fractions count every in-scope "
        f"site, Δ = 0 ones included."))
    table = delta_table(behaviour.delta)
    if len(table):
        blocks.append(Table(table))
    unmoved = behaviour.delta[behaviour.delta["direction"] == ""]
    if len(unmoved):
        pairs = {(row.kind, " and ".join(sorted((row.model, row.donor))), row.note)
                 for row in unmoved.itertuples()}
        blocks.append(Paragraph("Not in the table: " + "; ".join(
            f"{kind} probes between {models} ({note})" for kind, models, note in sorted(pairs)) + "."))
    changed = behaviour.delta["changed_at_full"].dropna()
    if len(changed) and (changed < 1.0).any():
        blocks.append(Paragraph(
            f"Some sites have Δ = 0: at the largest swept fraction only "
            f"{formatting.percent(float(changed.min()))} of the moved sites changed a stored value "
            f"(k_changed / k; tables/delta.csv)."))

    quoted = formatting.percent(settings.keep_fraction)
    blocks.append(Heading(3, f"Does keeping the {quoted} largest changes suffice?"))
    keep = behaviour.keep
    points, exact = swept_points(results, settings.keep_fraction)
    if not exact:
        around = " and ".join(formatting.percent(fraction) for _, fraction in points)
        blocks.append(Paragraph(f"f = {quoted} is not a swept fraction; the nearest swept fractions "
                                f"on either side are {around or 'absent'}, and both are reported."))
    largest = keep[keep["order"] == "largest"]
    if largest.empty:
        blocks.append(Paragraph(
            "The file cannot answer this: it has no transplant with order=largest (delta "
            "from=TUNED order=largest on the checkpoint without the behaviour)."))
    answers = [row.answer for row in largest.itertuples()] + [
        row.answer for row in keep[keep["order"] != "largest"].itertuples()]
    if answers:
        blocks.append(Bullets(answers))
    return blocks


def _claim_point_text(point) -> str:
    text = f"{formatting.percent(point.quoted)} → swept {formatting.percent(point.swept)}"
    if point.exact:
        return text
    ratio = point.swept / point.quoted
    if 0.5 <= ratio <= 2.0:
        return f"{text} (nearest swept; {ratio:.3g}× the quoted fraction)"
    return (f"{text} (the sweep does not reach {formatting.percent(point.quoted)}: this is the "
            f"nearest swept fraction, {ratio:.3g}× the quoted one)")


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _baseline_text(results: Results, model: str) -> str:
    if results.baseline is None or model not in results.baseline.index:
        return " (no baseline in the file: ΔNLL unavailable)"
    row = results.baseline.loc[model]
    return (f" — unperturbed: mean NLL {formatting.number(row['mean_nll'], 4)} nats/token, "
            f"next-token accuracy {formatting.number(row['accuracy'], 3)}, "
            f"{int(row['positions'])} evaluated tokens")


def _critical_display(critical: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in critical.iterrows():
        if row["logistic_status"] == "converged":
            logistic = (f"{formatting.percent(row['logistic_f50'])} "
                        f"[{formatting.percent(row['logistic_lo'])}, {formatting.percent(row['logistic_hi'])}]")
        else:
            logistic = row["logistic_status"]
        seeds = f"{row['seeds_crossed']}/{row['n_seeds']}"
        ends = [fraction_text(row[end], row["swept_min"], row["swept_max"])
                for end in ("seed_f_star_min", "seed_f_star_max")]
        seed_range = "—" if row["seeds_crossed"] == 0 else ends[0] if ends[0] == ends[1] else " – ".join(ends)
        rows.append({"model": row["model"], "strategy": row["strategy"], "criterion": row["description"],
                     "f* [CI]": describe_f_star(row), "seeds crossed": seeds,
                     "per-seed f* range": seed_range, "logistic f50 [CI]": logistic})
    return pd.DataFrame(rows)


def _data_quality_blocks(results: Results, curves: pd.DataFrame) -> list:
    blocks: list = [Heading(2, "Data quality")]
    missing = results.missing
    if missing.count == 0:
        blocks.append(Paragraph(f"Complete: all {missing.n_expected} grid trials are present."))
    else:
        blocks.append(Paragraph(
            f"PARTIAL FILE: {missing.count} of {missing.n_expected} grid trials are missing "
            f"({missing.count / missing.n_expected:.1%}). Statistics use the trials present; cells "
            f"below list the missing seeds (all ids in tables/missing_trials.csv)."))
        cells = missing.by_cell()
        blocks.append(Table(cells.head(50).astype(str),
                            "Missing trials per cell" + (" (first 50 cells)" if len(cells) > 50 else "")))
    trials = results.trials
    status = trials["status"].value_counts().reindex(trials["status"].cat.categories, fill_value=0)
    blocks.append(Paragraph("Trial status: " + ", ".join(f"{name}: {count}" for name, count in status.items())
                            + "."))
    nonfinite = curves[(curves["metric"] == "mean_nll") & (curves["n_nonfinite"] > 0)]
    if len(nonfinite):
        blocks.append(Paragraph(
            "Trials whose outputs contained NaN/Inf (mean NLL and KL are then NaN). They are "
            "real outcomes — behaviour destroyed — and count as +∞ in medians, means and "
            "threshold crossings (top-1 agreement already counts such positions as disagreeing)."))
        blocks.append(Table(pd.DataFrame({
            "model": nonfinite["model"], "strategy": nonfinite["strategy"], "amount": nonfinite["amount"],
            "non-finite trials": [f"{a} of {b}" for a, b in zip(nonfinite["n_nonfinite"], nonfinite["n"])]})))
    else:
        blocks.append(Paragraph("No trial produced non-finite outputs."))
    if results.notes:
        blocks.append(Bullets(list(results.notes)))
    if results.baseline is not None:
        baseline = results.baseline.reset_index()
        blocks.append(Table(pd.DataFrame({
            "model": baseline["model"],
            "mean NLL (nats/token)": [formatting.number(v, 5) for v in baseline["mean_nll"]],
            "perplexity": [formatting.number(v, 4) for v in baseline["perplexity"]],
            "next-token accuracy": [formatting.number(v, 4) for v in baseline["accuracy"]],
            "evaluated tokens": baseline["positions"].astype(str),
            "non-finite positions": baseline["nonfinite_positions"].astype(str),
            "greedy tokens": baseline["greedy_length"].astype(str)}), "Unperturbed baseline"))
    return blocks


def _methods_blocks(settings: ReportSettings, behaviour: BehaviourAnalysis | None = None) -> list:
    bootstrap = settings.bootstrap
    criteria = "; ".join(f"{c.describe()} (spec '{c.spec}')" for c in settings.criteria)
    extra = [] if behaviour is None else [
        "Behaviour probes: per kind, the rate is the fraction of the kind's prompts whose greedy "
        "continuation begins with the target, the log-prob the mean log p(target | prompt) "
        "(the file's column meanings). Probe curves show the mean across seeds with a percentile "
        f"bootstrap interval of the mean ({bootstrap.resamples} resamples of the seeds); with 12 or "
        "so prompts per kind a rate moves in steps of 1/12, so medians sit on those steps. A NaN "
        "log-prob (non-finite logits on a target row) counts as −∞ and such a prompt never behaves.",
        f"Behaviour vs capability and fine-tune deltas use the f* machinery (median across seeds) "
        f"with thresholds {BEHAVIOUR_FACTOR:.0%} × the baseline rate (for transplants: the tuned "
        f"checkpoint's rate) and {CAPABILITY_CRITERION.describe()}; crossings are strict (below / "
        f"above). The 'suffices' verdict at {formatting.percent(settings.keep_fraction)} applies "
        f"the same rule to the median at that fraction or at the swept fractions bracketing it: yes "
        f"when the behaviour is present already at the lower bracketing point, no when it is absent "
        f"even at the upper one."]
    return [Heading(2, "Methods"), Bullets([
        "Fraction axis: k / n_scope, the fraction of in-scope parameters actually perturbed "
        "(k = round(f × n_scope)); count entries sit at their own fraction.",
        f"Centre and spread across seeds: median and mean with percentile bootstrap intervals "
        f"({bootstrap.resamples} resamples of the seeds, {bootstrap.confidence:.0%}); the resampling "
        f"stream of each cell is keyed by --seed {bootstrap.seed} and the cell's labels, so a rerun "
        f"reproduces every number. Quartiles, min, max and standard deviation are in tables/curves.csv. "
        f"With few seeds percentile intervals run narrow: in simulations with normal outcomes, "
        f"nominal 95% intervals covered the truth 90–93% of the time at 10 seeds and 94–96% at 25.",
        "Non-finite outputs: the engine writes NaN mean NLL/KL for a trial whose logits contain "
        "NaN/Inf. Such a trial is counted as +∞ (behaviour destroyed) for NLL, perplexity and KL "
        "statistics and always counts as past a KL/NLL threshold; it is never dropped.",
        "Missing trials (partial files) are left out of every statistic and listed under Data quality.",
        "Pooled rates (tables/curves.csv: pooled_rate, wilson_lo, wilson_hi): successes = "
        "round(rate × positions) summed over seeds, with a Wilson score interval. It treats tokens "
        "as independent, so it reflects evaluation-set sampling only and is much narrower than the "
        "seed-to-seed spread; quote the bootstrap interval when comparing strategies.",
        f"Criteria for f*: {criteria}. The first is the one quoted in the claim check.",
        "f*: first crossing of the median curve, linear interpolation in log10 f between the "
        "bracketing swept fractions (geometric midpoint when the crossed point is non-finite); "
        "bootstrap CI over seeds; CI ends outside the swept range are shown as '< smallest' / "
        "'> largest'. Logistic fit: maximum-likelihood logistic regression of 'past the threshold' "
        "on log10 f over all trials, Wald interval; it treats trials as independent although a "
        "seed's sites are nested across fractions, so its interval is optimistic.",
        "Deterministic strategies (magnitude, delta order=largest) run one trial per fraction: no "
        "seed spread, no interval.",
    ] + extra)]


def _provenance_blocks(results: Results) -> list:
    provenance = results.provenance
    rows = [(name, _provenance_value(value)) for name, value in sorted(provenance.items())
            if name != "job_text"]
    blocks = [Heading(2, "Provenance"),
              Table(pd.DataFrame(rows, columns=["attribute", "value"]),
                    "Root attributes of the results file")]
    if "job_text" in provenance:
        blocks += [Paragraph("Job file as run:"), Code(str(provenance["job_text"]))]
    return blocks


def _provenance_value(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
