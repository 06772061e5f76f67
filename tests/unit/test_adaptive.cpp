// Adaptive f* search (grid/adaptive.hpp): the lattice, the search against every possible
// crossing point (the truth is known by construction), warm starts, grid ids, and the job keys.
#define BOOST_TEST_MODULE adaptive
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <map>
#include <optional>
#include <string>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/adaptive.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;

namespace {

// Runs one search to its end against the step function "crossed from point `threshold` on",
// answering whatever it asks for; returns the final state and the points evaluated.
struct Finished {
  fs::SearchState state;
  int64_t evaluated = 0;
};
Finished search_to_end(int32_t levels, std::optional<fs::Bracket> start, int64_t threshold) {
  std::map<int64_t, bool> known;
  for (int round = 0; round < 1000; ++round) {
    const fs::CrossedAt crossed = [&](int64_t j) -> std::optional<bool> {
      BOOST_REQUIRE(j >= 0 && j <= (int64_t{1} << levels));
      const auto found = known.find(j);
      if (found == known.end()) return std::nullopt;
      return found->second;
    };
    const fs::SearchState state = fs::walk_search(levels, start, crossed);
    if (state.outcome != fs::SearchOutcome::pending) {
      return {state, static_cast<int64_t>(known.size())};
    }
    BOOST_REQUIRE(!state.needed.empty());
    for (int64_t j : state.needed) {
      BOOST_REQUIRE(known.count(j) == 0);  // never asks twice
      known[j] = j >= threshold;
    }
  }
  BOOST_FAIL("search did not finish");
  return {};
}

// The true crossing is `threshold`: 0 is below the range, last + 1 above it.
void check_found(const Finished& done, int64_t threshold, int64_t last) {
  if (threshold == 0) {
    BOOST_TEST((done.state.outcome == fs::SearchOutcome::below_range));
  } else if (threshold == last + 1) {
    BOOST_TEST((done.state.outcome == fs::SearchOutcome::not_reached));
  } else {
    BOOST_TEST((done.state.outcome == fs::SearchOutcome::bracketed));
    BOOST_TEST(done.state.bracket.below == threshold - 1);
    BOOST_TEST(done.state.bracket.above == threshold);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(lattice_steps_are_at_most_the_width_and_ends_are_exact) {
  // ln(1e6) / ln(1.1) = 144.96 steps needed: 2^8 = 256.
  const fs::FractionLattice lattice = fs::lattice_for(1e-6, 1.0, 0.1);
  BOOST_TEST(lattice.levels == 8);
  const std::vector<double> points = lattice.fractions();
  BOOST_TEST(points.size() == 257u);
  BOOST_TEST(points.front() == 1e-6);
  BOOST_TEST(points.back() == 1.0);
  for (size_t j = 1; j < points.size(); ++j) {
    BOOST_TEST(points[j] > points[j - 1]);
    BOOST_TEST(points[j] / points[j - 1] <= 1.1);
    BOOST_TEST(points[j] / points[j - 1] == std::pow(1e6, 1.0 / 256),
               boost::test_tools::tolerance(1e-12));
  }
  // One level fewer would be too coarse; a width covering the whole range needs no level.
  BOOST_TEST(std::pow(1e6, 1.0 / 128) > 1.1);
  BOOST_TEST(fs::lattice_levels_for(0.01, 0.02, 1.5) == 0);
  BOOST_TEST(fs::lattice_levels_for(0.01, 0.02, 0.5) == 1);
}

BOOST_AUTO_TEST_CASE(cold_search_finds_every_crossing_point) {
  for (int32_t levels : {0, 1, 3, 6}) {
    const int64_t last = int64_t{1} << levels;
    for (int64_t threshold = 0; threshold <= last + 1; ++threshold) {
      const Finished done = search_to_end(levels, std::nullopt, threshold);
      check_found(done, threshold, last);
      // Two end points, then one trial per level.
      if (threshold > 0 && threshold <= last) BOOST_TEST(done.evaluated == levels + 2);
      BOOST_TEST(done.state.visited == done.evaluated);
    }
  }
}

BOOST_AUTO_TEST_CASE(warm_search_finds_every_crossing_point_and_is_cheap_nearby) {
  const int32_t levels = 6;
  const int64_t last = int64_t{1} << levels;
  for (int64_t previous : {0, 1, 20, 63}) {
    const fs::Bracket start{previous, previous + 1};
    for (int64_t threshold = 0; threshold <= last + 1; ++threshold) {
      const Finished done = search_to_end(levels, start, threshold);
      check_found(done, threshold, last);
      // Never more than galloping plus bisecting the galloped span.
      BOOST_TEST(done.evaluated <= 2 * levels + 4);
    }
    // The same crossing as the previous seed: its two points settle it.
    BOOST_TEST(search_to_end(levels, start, previous + 1).evaluated == 2);
  }
  // One lattice point away: two more trials at most.
  BOOST_TEST(search_to_end(levels, fs::Bracket{20, 21}, 22).evaluated <= 4);
  BOOST_TEST(search_to_end(levels, fs::Bracket{20, 21}, 20).evaluated <= 4);
}

BOOST_AUTO_TEST_CASE(warm_start_must_be_adjacent_points) {
  const fs::CrossedAt never = [](int64_t) { return std::optional<bool>(false); };
  BOOST_CHECK_THROW(fs::walk_search(4, fs::Bracket{3, 5}, never), std::exception);
  BOOST_CHECK_THROW(fs::walk_search(4, fs::Bracket{16, 17}, never), std::exception);
}

BOOST_AUTO_TEST_CASE(grid_id_of_inverts_trial) {
  fs::GridAxes axes;
  axes.n_models = 2;
  axes.deterministic = {false, true, false};
  axes.n_amounts = 5;
  axes.n_seeds = 3;
  const fs::Grid grid(axes);
  for (int64_t id = 0; id < grid.size(); ++id) {
    const fs::TrialSpec spec = grid.trial(id);
    BOOST_TEST(grid.id_of(spec.model_idx, spec.strategy_idx, spec.amount_idx, spec.seed_idx) == id);
  }
  BOOST_CHECK_THROW(grid.id_of(0, 1, 0, 1), std::out_of_range);  // deterministic: seed 0 only
  BOOST_CHECK_THROW(grid.id_of(2, 0, 0, 0), std::out_of_range);
  BOOST_CHECK_THROW(grid.id_of(0, 0, 5, 0), std::out_of_range);
}

namespace {

// A job whose model and token files exist (their content is checked later, by the loaders).
struct JobFiles {
  fs::test::TempDir dir;
  std::string head;
  JobFiles() {
    dir.write("model.bin", "model");
    dir.write("tokens.npy", "tokens");
    head =
        "name = adaptive-test\n[models]\nmodel = m path=model.bin\n[eval]\n"
        "tokens = tokens.npy\n[sweep]\nseeds = 0-2\nstrategy = gaussian sigma=0.5\n";
  }
  fs::JobConfig parse(const std::string& sweep_lines) const {
    return fs::parse_job_text(head + sweep_lines, dir.file("adaptive.ini"));
  }
};

std::string input_error(const std::string& sweep_lines) {
  const JobFiles files;
  try {
    files.parse(sweep_lines);
  } catch (const fs::InputError& error) {
    return error.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(job_keys_replace_the_amounts_by_the_lattice) {
  const JobFiles files;
  const fs::JobConfig job = files.parse(
      "fractions_log = 1e-6 1 1\nadaptive = top1_agreement<0.5 mean_nll>4\nadaptive_width = 0.1\n");
  BOOST_REQUIRE(job.adaptive.has_value());
  BOOST_TEST(job.adaptive->criteria.size() == 2u);
  BOOST_TEST(job.adaptive->criteria[0].text() == "top1_agreement<0.5");
  BOOST_TEST(job.adaptive->criteria[1].text() == "mean_nll>4");
  BOOST_TEST(job.adaptive->criteria[0].holds(0.4));
  BOOST_TEST(!job.adaptive->criteria[0].holds(0.5));
  BOOST_TEST(job.adaptive->criteria[1].holds(std::nan("")));  // destroyed outputs: changed
  BOOST_TEST(job.amounts.size() == 257u);
  BOOST_TEST(job.amounts.front().fraction == 1e-6);
  BOOST_TEST(job.amounts.back().fraction == 1.0);
  BOOST_TEST(fs::echo_job(job).find("adaptive search for f*: top1_agreement<0.5 mean_nll>4") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(bad_adaptive_keys_name_the_key_and_the_fix) {
  BOOST_TEST(input_error("fractions = 0.5\nadaptive = top1_agreement<0.5\n")
                 .find("needs a range of fractions") != std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\ncounts = 4\nadaptive = top1_agreement<0.5\n")
                 .find("'sweep.counts': an adaptive search needs fractions") != std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\nadaptive = top1_agreement=0.5\n")
                 .find("expected METRIC<VALUE or METRIC>VALUE") != std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\nadaptive = top1_agreement<x\n")
                 .find("cannot parse 'x' as a number") != std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\nadaptive = a<1 a<1\n").find("given twice") !=
             std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\nadaptive = a<1\nadaptive_width = 0\n")
                 .find("'sweep.adaptive_width': must be finite and > 0") != std::string::npos);
  BOOST_TEST(input_error("fractions = 1e-300 1\nadaptive = a<1\nadaptive_width = 1e-6\n")
                 .find("choose a wider bracket") != std::string::npos);
  BOOST_TEST(input_error("fractions = 0.1 0.5\nadaptive_width = 0.1\n")
                 .find("is given without 'sweep.adaptive'") != std::string::npos);
}
