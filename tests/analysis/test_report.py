"""fracsweep-report end to end: files, sections, reproducibility, --help, and clear failures."""
import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import behaviour_sweep, standard_sweep
from fracsweep_analysis.cli import report_parser
from synthetic_results import write_results

BIN = Path(__file__).resolve().parents[2] / "analysis" / "bin"


def run_report(*arguments):
    return subprocess.run([str(BIN / "fracsweep-report"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def partial_report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    sweep = standard_sweep()
    omitted = {sweep.grid_trials()[i][0] for i in (3, 4, 200)}
    path = write_results(directory / "partial.h5", standard_sweep(omit_trials=omitted, complete=False))
    completed = run_report(path, "-o", directory / "out", "--resamples", "300", "--seed", "9")
    return directory / "out", completed, omitted


def test_report_succeeds_and_writes_every_output(partial_report):
    out, completed, _ = partial_report
    assert completed.returncode == 0, completed.stderr
    for name in ("report.md", "report.html", "tables/curves.csv", "tables/critical.csv",
                 "tables/claims.csv", "tables/missing_trials.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert len(list((out / "figures").glob("*.png"))) == len(list((out / "figures").glob("*.svg"))) >= 11


def test_report_sections_and_numbers(partial_report):
    out, _, omitted = partial_report
    markdown = (out / "report.md").read_text()
    for heading in ("## Claim check", "## Critical fraction f\\*", "## Figures", "## Data quality",
                    "## Methods", "## Provenance"):
        assert heading in markdown, heading
    assert "PARTIAL FILE: 3 of" in markdown
    assert "25% → swept 31.6% (nearest swept; 1.26× the quoted fraction)" in markdown
    assert "not reached (\\> 56.2%, the largest swept)" in markdown
    assert "count as +∞ in medians" in markdown
    assert "| git\\_commit | " + "0" * 40 + " |" in markdown
    assert "bootstrap seed 9" in markdown and "300 bootstrap resamples" in markdown
    missing = (out / "tables/missing_trials.csv").read_text().splitlines()
    assert len(missing) == 1 + len(omitted)


def test_every_referenced_image_exists(partial_report):
    out, _, _ = partial_report
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    markdown_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    html_images = re.findall(r'<img src="([^"]+)"', html)
    assert markdown_images and sorted(markdown_images) == sorted(html_images)
    for relative in markdown_images + re.findall(r'<a href="([^"]+)"', html):
        assert (out / relative).is_file(), relative


def test_html_and_markdown_carry_the_same_tables(partial_report):
    out, _, _ = partial_report
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    markdown_rows = sum(1 for line in markdown.splitlines() if line.startswith("| ") and "---" not in line)
    assert markdown_rows == html.count("<tr>")


def test_same_seed_reproduces_every_number_and_another_seed_changes_intervals(partial_report, tmp_path):
    out, _, _ = partial_report
    source = out.parent / "partial.h5"
    again = run_report(source, "-o", tmp_path / "again", "--resamples", "300", "--seed", "9", "--no-figures")
    other = run_report(source, "-o", tmp_path / "other", "--resamples", "300", "--seed", "10", "--no-figures")
    assert again.returncode == 0 and other.returncode == 0
    for table in ("curves.csv", "critical.csv", "claims.csv"):
        assert (tmp_path / "again/tables" / table).read_text() == (out / "tables" / table).read_text()
    assert (tmp_path / "other/tables/curves.csv").read_text() != (out / "tables/curves.csv").read_text()


def test_figures_of_an_earlier_report_are_removed(tmp_path, standard_file):
    figures = tmp_path / "out/figures"
    figures.mkdir(parents=True)
    (figures / "curve-old-model-top1_agreement.png").write_bytes(b"stale")
    (figures / "notes.txt").write_text("not ours")
    completed = run_report(standard_file, "-o", tmp_path / "out", "--resamples", "200", "--no-figures")
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in figures.iterdir()) == ["notes.txt"]


def test_custom_criterion_becomes_the_quoted_f_star(tmp_path, standard_file):
    completed = run_report(standard_file, "-o", tmp_path / "out", "--resamples", "200", "--no-figures",
                           "--criterion", "mean_kl>2", "--criterion", "top1_agreement<0.9",
                           "--claim-fractions", "0.01")
    assert completed.returncode == 0, completed.stderr
    markdown = (tmp_path / "out/report.md").read_text()
    assert "f\\* is the smallest fraction at which mean KL(unperturbed \\|\\| perturbed) \\> 2 nats/token" in markdown
    assert "top-1 agreement @ 1%" in markdown


def test_help_explains_every_option():
    completed = run_report("--help")
    assert completed.returncode == 0
    for action in report_parser()._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in completed.stdout, option
    assert "Exit status" in completed.stdout


def write_text_file(path):
    path.write_text("hello")


def write_foreign_hdf5(path):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=np.arange(3))


@pytest.mark.parametrize("make_bad,message", [(write_text_file, "not an HDF5 file"),
                                              (write_foreign_hdf5, "not a fracsweep results file")])
def test_bad_input_files_fail_clearly(tmp_path, make_bad, message):
    path = tmp_path / "bad.h5"
    make_bad(path)
    completed = run_report(path, "-o", tmp_path / "out")
    assert completed.returncode == 3
    assert completed.stderr.startswith(f"fracsweep-report: error: {path}: ")
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_bad_options_fail_with_usage(tmp_path, standard_file):
    for arguments in (["--criterion", "speed<3"], ["--claim-fractions", "2"], ["--metrics", "nope"],
                      ["--resamples", "5"]):
        completed = run_report(standard_file, "-o", tmp_path / "out", *arguments)
        assert completed.returncode == 2, arguments
        assert "usage: fracsweep-report" in completed.stderr


# --- behaviour probes ---------------------------------------------------------------------------

def test_files_without_probes_get_no_behaviour_sections(partial_report):
    out, _, _ = partial_report
    markdown = (out / "report.md").read_text()
    for heading in ("## Behaviour probes", "## Behaviour vs capability", "## Fine-tune delta"):
        assert heading not in markdown
    assert not list((out / "tables").glob("behaviour_*.csv")) and not list((out / "tables").glob("delta*.csv"))
    assert not list((out / "figures").glob("behaviour-*"))


@pytest.fixture(scope="module")
def behaviour_report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("behaviour-report")
    path = write_results(directory / "behaviour.h5", behaviour_sweep())
    completed = run_report(path, "-o", directory / "out", "--resamples", "300", "--formats", "png")
    assert completed.returncode == 0, completed.stderr
    return directory / "out"


def test_behaviour_sections_tables_and_figures(behaviour_report):
    out = behaviour_report
    markdown = (out / "report.md").read_text()
    positions = [markdown.index(heading) for heading in (
        "## Critical fraction f\\*", "## Behaviour probes", "### Model tuned", "### Model base",
        "## Behaviour vs capability", "## Fine-tune delta: how much must be kept",
        "### Does keeping the 25% largest changes suffice?", "## Figures", "## Methods")]
    assert positions == sorted(positions)
    for name in ("behaviour_curves", "behaviour_vs_capability", "delta", "delta_keep"):
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0, name
    for model in ("tuned", "base"):
        assert f"![{model}: behaviour probes and general ability vs fraction](figures/behaviour-{model}.png)" in markdown
        assert (out / "figures" / f"behaviour-{model}.png").is_file()
    versus = pd.read_csv(out / "tables/behaviour_vs_capability.csv")
    assert versus.set_index(["strategy", "model", "kind"]).loc[("zero", "tuned", "trigger"), "first"] == "behaviour first"
    assert "| tuned | zero | trigger | 1 | " in markdown and "behaviour first (behaviour interval lies below" in markdown
    assert "f = 25% is not a swept fraction; the nearest swept fractions on either side are 17.8% and 31.6%" in markdown
    assert "- Keeping the 25% largest changes of tuned's fine-tune (transplanted onto base), trigger probes: " \
           "suffices" in markdown
    assert "Left out of the table" in markdown and "tuned / delta(from=tuned,order=random)" in markdown.replace("\\", "")
    assert "percentile bootstrap CI of the mean over seeds" in markdown


def test_behaviour_report_html_matches_markdown(behaviour_report):
    markdown = (behaviour_report / "report.md").read_text()
    html = (behaviour_report / "report.html").read_text()
    markdown_rows = sum(1 for line in markdown.splitlines() if line.startswith("| ") and "---" not in line)
    assert markdown_rows == html.count("<tr>")
    for relative in re.findall(r'<img src="([^"]+)"', html):
        assert (behaviour_report / relative).is_file(), relative


def test_keep_fraction_option_names_the_swept_point(tmp_path):
    path = write_results(tmp_path / "b.h5", behaviour_sweep())
    completed = run_report(path, "-o", tmp_path / "out", "--resamples", "200", "--no-figures",
                           "--keep-fraction", "0.1")
    assert completed.returncode == 0, completed.stderr
    markdown = (tmp_path / "out/report.md").read_text()
    assert "### Does keeping the 10% largest changes suffice?" in markdown
    assert "is not a swept fraction" not in markdown
    assert "trigger probes: does not suffice — rate 0.372 (one trial) at 10%" in markdown  # (1/1.3)^2 / (1 + (1/1.3)^2)


def test_probe_criteria_work_on_files_with_probes_and_fail_clearly_without(tmp_path, standard_file):
    path = write_results(tmp_path / "b.h5", behaviour_sweep())
    completed = run_report(path, "-o", tmp_path / "out", "--resamples", "200", "--no-figures",
                           "--criterion", "probe_trigger_rate<x0.5")
    assert completed.returncode == 0, completed.stderr
    critical = pd.read_csv(tmp_path / "out/tables/critical.csv")
    assert set(critical["criterion"]) == {"probe_trigger_rate<x0.5"}
    completed = run_report(standard_file, "-o", tmp_path / "old", "--criterion", "probe_trigger_rate<x0.5")
    assert completed.returncode == 3
    assert "criterion 'probe_trigger_rate<x0.5': the file has no /trials column probe_trigger_rate" in completed.stderr
