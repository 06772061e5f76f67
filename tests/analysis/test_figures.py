"""Figures are produced, non-empty, labelled, and cope with non-finite medians."""
import matplotlib.image
import numpy as np
import pytest

from conftest import behaviour_sweep, standard_sweep
from fracsweep_analysis.behaviour import probe_curves, probe_kinds
from fracsweep_analysis.critical import DEFAULT_CRITERIA, critical_fractions
from fracsweep_analysis.figures import (OKABE_ITO, _wrap, make_behaviour_figures, make_figures,
                                        scope_display, scope_groups, strategy_styles)
from fracsweep_analysis.load import load_results
from fracsweep_analysis.stats import BootstrapSettings, summarise_curves
from synthetic_results import write_results

FAST = BootstrapSettings(resamples=300, seed=4)
METRICS = ("top1_agreement", "mean_kl", "mean_nll")


@pytest.fixture(scope="module")
def figure_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("figures")
    results = load_results(write_results(directory / "results.h5", standard_sweep()))
    curves = summarise_curves(results, METRICS, FAST)
    critical = critical_fractions(results, DEFAULT_CRITERIA, FAST)
    files = make_figures(results, curves, critical, list(DEFAULT_CRITERIA), directory / "out",
                         METRICS, (0.001, 0.25), FAST.confidence)
    return {figure.stem: figure for figure in files}


def test_expected_figures_exist_in_both_formats(figure_files):
    stems = set(figure_files)
    assert {f"curve-tiny-{m}" for m in METRICS} <= stems
    assert {f"heatmap-tiny-{m}" for m in METRICS} <= stems
    assert "sensitivity-tiny-gaussian-sigma-0-1-relative-abs" in stems
    for figure in figure_files.values():
        assert sorted(p.suffix for p in figure.paths) == [".png", ".svg"]
        assert all(p.stat().st_size > 10_000 for p in figure.paths)


def test_pngs_are_readable_sized_and_not_blank(figure_files):
    for figure in figure_files.values():
        png = next(p for p in figure.paths if p.suffix == ".png")
        pixels = matplotlib.image.imread(png)  # (height, width, channels) in [0, 1]
        height, width = pixels.shape[:2]
        assert 400 <= height <= 2500 and 800 <= width <= 2600, (png.name, pixels.shape)
        ink = (pixels[..., :3].min(axis=2) < 0.9).mean()  # share of non-white pixels
        assert ink > 0.03, png.name
        colourful = np.ptp(pixels[..., :3], axis=2) > 0.2  # pixels that are clearly coloured
        assert colourful.mean() > 0.005, png.name


def test_svg_keeps_axis_labels_and_legend_as_text(figure_files):
    svg = next(p for p in figure_files["curve-tiny-top1_agreement"].paths if p.suffix == ".svg").read_text()
    for text in ("fraction of in-scope parameters perturbed (log scale)",
                 "top-1 agreement with unperturbed model", "fraction of tokens",
                 "magnitude(then=zero)", "(deterministic)", "threshold for f*", "f = 0.1%", "f = 25%"):
        assert text in svg, text


def test_nonfinite_medians_are_drawn_and_explained(figure_files):
    svg = next(p for p in figure_files["curve-tiny-mean_kl"].paths if p.suffix == ".svg").read_text()
    assert "non-finite outputs (drawn at top edge)" in svg
    heatmap = next(p for p in figure_files["heatmap-tiny-mean_kl"].paths if p.suffix == ".svg").read_text()
    assert ">inf<" in heatmap


def test_scope_groups_find_per_layer_strategies(standard_file):
    groups = scope_groups(load_results(standard_file))
    assert groups == {"gaussian(sigma=0.1,relative=abs)": [
        "gaussian(sigma=0.1,relative=abs)[include=layers.0.*;exclude=]",
        "gaussian(sigma=0.1,relative=abs)[include=layers.1.*;exclude=]"]}
    assert scope_display("include=layers.0.*;exclude=") == "layers.0.*"
    assert scope_display("include=*;exclude=tok_embeddings") == "* except tok_embeddings"


def test_styles_are_colour_blind_safe_and_distinct():
    styles = strategy_styles([f"s{i}" for i in range(10)])
    assert [styles[f"s{i}"].colour for i in range(8)] == list(OKABE_ITO)
    assert len({(s.colour, s.marker, s.linestyle) for s in styles.values()}) == 10
    assert styles["s8"].marker != styles["s0"].marker  # colours repeat after 8, markers do not


def test_long_labels_wrap_at_punctuation():
    assert _wrap("gaussian(sigma=0.1,relative=abs)[include=layers.0.*;exclude=]") == \
        "gaussian(sigma=0.1,relative=abs)\n[include=layers.0.*;exclude=]"


@pytest.fixture(scope="module")
def behaviour_figures(tmp_path_factory):
    directory = tmp_path_factory.mktemp("behaviour-figures")
    results = load_results(write_results(directory / "b.h5", behaviour_sweep()))
    kinds = probe_kinds(results)
    curves = summarise_curves(results, ("mean_nll", "top1_agreement"), FAST)
    files = make_behaviour_figures(results, probe_curves(results, kinds, FAST), curves, kinds,
                                   directory / "out", FAST.confidence)
    return {figure.stem: figure for figure in files}


def test_one_behaviour_figure_per_model_with_probes_and_ability(behaviour_figures):
    assert set(behaviour_figures) == {"behaviour-tuned", "behaviour-base"}
    svg = next(p for p in behaviour_figures["behaviour-tuned"].paths if p.suffix == ".svg").read_text()
    for text in ("trigger: behaviour rate (fraction of", "control: log p(target | prompt) (nats)",
                 "mean negative log-likelihood", "unperturbed model", "delta(from=base,order=largest)",
                 "(deterministic)", "non-finite (drawn at the bottom edge)", "bootstrap CI of the mean"):
        assert text in svg, text
    png = next(p for p in behaviour_figures["behaviour-tuned"].paths if p.suffix == ".png")
    pixels = matplotlib.image.imread(png)
    assert (pixels[..., :3].min(axis=2) < 0.9).mean() > 0.03
    assert (np.ptp(pixels[..., :3], axis=2) > 0.2).mean() > 0.005


def test_no_probe_kinds_no_behaviour_figures(standard_file, tmp_path):
    results = load_results(standard_file)
    assert make_behaviour_figures(results, None, None, [], tmp_path, 0.95) == []
