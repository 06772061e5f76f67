"""Command lines: fracsweep-report and fracsweep-sites (scripts in analysis/bin)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .claims import DEFAULT_CLAIM_FRACTIONS
from .critical import DEFAULT_CRITERIA, parse_criterion
from .delta import DEFAULT_KEEP_FRACTION
from .figures import DEFAULT_FORMATS
from .load import ResultsFileError, load_results
from .metrics import DEFAULT_METRICS, FIGURE_METRICS, METRICS
from .progress import Progress
from .report import ReportSettings, write_report
from .sites import SitesError, compare_with_record, trial_sites
from .stats import DEFAULT_BOOTSTRAP_SEED, DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, BootstrapSettings

EXIT_OK = 0
EXIT_MISMATCH = 1   # fracsweep-sites: the mirror disagrees with the engine's record
EXIT_USAGE = 2      # argparse's own code for bad options
EXIT_INPUT = 3      # unreadable, foreign or inconsistent input file
FIGURE_FORMATS = ("png", "svg", "pdf")


def _metric_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join(METRICS)}")
    return names


def _fraction_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {text!r}")
    return values


def _fraction(text: str) -> float:
    values = _fraction_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one fraction in (0, 1], got {text!r}")
    return values[0]


def _format_list(text: str) -> tuple[str, ...]:
    formats = tuple(item.strip().lower() for item in text.split(",") if item.strip())
    if not formats or any(f not in FIGURE_FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"formats must be among {', '.join(FIGURE_FORMATS)}, got {text!r}")
    return formats


def _criterion(text: str):
    try:
        return parse_criterion(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fracsweep-report",
        description="Analyse a fracsweep results file: claim-check table, critical fractions f*, "
                    "curves with bootstrap confidence intervals, figures, data-quality and "
                    "provenance sections, written as Markdown and HTML. Files with behaviour-probe "
                    "columns also get probe curves, a behaviour-vs-capability table and, with "
                    "delta strategies, how much of a fine-tune must be kept.",
        epilog="Outputs in OUT: report.md, report.html, figures/*.png|svg, tables/curves.csv, "
               "tables/critical.csv, tables/claims.csv (and tables/missing_trials.csv for partial "
               "files; tables/behaviour_curves.csv, behaviour_vs_capability.csv, delta.csv and "
               "delta_keep.csv for files with probes). Exit status: 0 ok, 2 bad options, 3 "
               "unreadable or foreign results file.",
    )
    parser.add_argument("results", type=Path,
                        help="results file (HDF5, schema fracsweep-results/1); partial files from "
                             "interrupted runs are accepted and their missing trials reported")
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="output directory (created if needed; report files in it are overwritten)")
    parser.add_argument("--criterion", dest="criteria", action="append", type=_criterion, metavar="SPEC",
                        help="threshold defining f*; repeat for several, the first is quoted in the "
                             "claim check. SPEC is METRIC<VALUE or METRIC>VALUE (absolute), "
                             "METRIC>xFACTOR (FACTOR times the unperturbed baseline; mean_nll, "
                             "perplexity, accuracy) or METRIC<-POINTSpt (baseline minus percentage "
                             "points; accuracy). Default: "
                             + ", ".join(c.spec for c in DEFAULT_CRITERIA))
    parser.add_argument("--claim-fractions", type=_fraction_list, metavar="F,F",
                        default=",".join(f"{f:g}" for f in DEFAULT_CLAIM_FRACTIONS),
                        help="fractions quoted in the claim check; the nearest swept fractions are "
                             "used and named (default: %(default)s)")
    parser.add_argument("--keep-fraction", type=_fraction, default=DEFAULT_KEEP_FRACTION, metavar="F",
                        help="for files with behaviour probes and delta strategies: the fraction of "
                             "a fine-tune in the question 'does keeping the F largest changes "
                             "suffice?'; the swept fractions bracketing it are used when it is not "
                             "swept (default: %(default)s)")
    parser.add_argument("--metrics", type=_metric_list, default=",".join(DEFAULT_METRICS), metavar="M,M",
                        help=f"metrics summarised in tables/curves.csv, among {', '.join(METRICS)} "
                             f"(default: %(default)s)")
    parser.add_argument("--figure-metrics", type=_metric_list, default=",".join(FIGURE_METRICS),
                        metavar="M,M", help="metrics drawn as curve and heatmap figures; must also be "
                                            "in --metrics (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, metavar="N",
                        help="bootstrap resamples per interval, at least 100 (default: %(default)s)")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE, metavar="C",
                        help="confidence level of every interval (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_BOOTSTRAP_SEED,
                        help="bootstrap seed: the same file, options and seed reproduce every "
                             "number (default: %(default)s)")
    parser.add_argument("--formats", type=_format_list, default=",".join(DEFAULT_FORMATS), metavar="F,F",
                        help=f"figure file formats, among {', '.join(FIGURE_FORMATS)}; the report "
                             f"embeds the PNG when present (default: %(default)s)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures (tables only)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress messages on stderr (they appear for steps longer than a second)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def report_main(argv: list[str] | None = None) -> int:
    parser = report_parser()
    options = parser.parse_args(argv)
    try:
        bootstrap = BootstrapSettings(options.resamples, options.confidence, options.seed)
    except ValueError as error:
        parser.error(str(error))
    settings = ReportSettings(metrics=options.metrics, figure_metrics=options.figure_metrics,
                              criteria=tuple(options.criteria or DEFAULT_CRITERIA),
                              claim_fractions=options.claim_fractions, bootstrap=bootstrap,
                              formats=options.formats, figures=not options.no_figures,
                              keep_fraction=options.keep_fraction)
    progress = Progress(enabled=not options.quiet)
    try:
        outputs = write_report(options.results, options.out, settings, progress)
    except ResultsFileError as error:
        print(f"fracsweep-report: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    if not options.quiet:
        print(f"fracsweep-report: wrote {outputs.markdown} and {outputs.html} "
              f"({len(outputs.figures)} figures)", file=sys.stderr)
    return EXIT_OK


# --- fracsweep-sites ---------------------------------------------------------------------------

def sites_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fracsweep-sites",
        description="List the exact parameters one trial perturbed, re-derived offline with a "
                    "Python mirror of the engine's keyed generator (no model needed): site rank, "
                    "tensor, index and position in the tensor, flat offset, the random draw of "
                    "the value stream, and old/new values when the file recorded the trial "
                    "(job key record_sites). Recorded trials are checked against the mirror.",
        epilog="Exit status: 0 ok, 1 the mirror disagrees with the engine's record, 2 bad options, "
               "3 unreadable file or a trial that cannot be listed.")
    parser.add_argument("results", type=Path, help="results file (HDF5, schema fracsweep-results/1)")
    parser.add_argument("trial", type=int, help="trial id: /trials/trial; ids run model-major, then strategy, amount, seed")
    parser.add_argument("--limit", type=int, default=20, metavar="N",
                        help="sites printed; 0 prints all (default: %(default)s)")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="also write every site to this CSV file")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def sites_main(argv: list[str] | None = None) -> int:
    options = sites_parser().parse_args(argv)
    try:
        results = load_results(options.results)
        listing = trial_sites(results, options.trial)
    except (ResultsFileError, SitesError) as error:
        print(f"fracsweep-sites: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    scope = results.grid.strategies.set_index("strategy").loc[listing.strategy, "strategy_scope"]
    print(f"trial {listing.trial} of {results.path}")
    print(f"  model      {listing.model}")
    print(f"  strategy   {listing.strategy}   (scope {scope})")
    print(f"  seed       {listing.seed}")
    print(f"  sites      k = {listing.k} of n_scope = {listing.n_scope} in-scope parameters "
          f"(k from {listing.k_source})")
    if not listing.deterministic:
        print(f"  sites key  {listing.sites_key_text}")
        print(f"  values key {listing.values_key_text}")
    print(f"  new value  {listing.recipe.description}")
    for note in listing.notes:
        print(f"  note: {note}")
    table = listing.sites
    shown = table if options.limit <= 0 else table.head(options.limit)
    if len(shown):
        print()
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.9g}"))
        if len(shown) < len(table):
            print(f"(showing {len(shown)} of {len(table)} sites; --limit 0 shows all, --csv writes them)")
    if options.csv:
        table.to_csv(options.csv, index=False)
        print(f"wrote {len(table)} sites to {options.csv}")
    comparison = compare_with_record(listing)
    if comparison is None:
        return EXIT_OK
    print()
    values_text = ("" if comparison.values_compared == 0 else
                   f"; new values bit-identical for {comparison.values_bitwise_equal}/"
                   f"{comparison.values_compared} (largest difference {comparison.max_ulp_difference} ulp)")
    verdict = "matches" if comparison.sites_match else "DOES NOT MATCH"
    print(f"engine record (/sites): {comparison.n_recorded} sites, mirror {comparison.n_mirror}; "
          f"offsets identical for {comparison.offsets_equal}{values_text} — the mirror {verdict} the engine")
    return EXIT_OK if comparison.sites_match else EXIT_MISMATCH
