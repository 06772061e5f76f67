#include "fracsweep/grid/adaptive.hpp"

#include <algorithm>
#include <cmath>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

double FractionLattice::fraction(int64_t j) const {
  if (j <= 0) return smallest;
  if (j >= last()) return largest;
  const double log_step = (std::log(largest) - std::log(smallest)) / static_cast<double>(last());
  return std::exp(std::log(smallest) + static_cast<double>(j) * log_step);
}

std::vector<double> FractionLattice::fractions() const {
  std::vector<double> points;  // (last() + 1)
  points.reserve(static_cast<size_t>(last() + 1));
  for (int64_t j = 0; j <= last(); ++j) points.push_back(fraction(j));
  return points;
}

int32_t lattice_levels_for(double smallest, double largest, double width) {
  check_invariant(smallest > 0 && largest > smallest && width > 0,
                  "lattice needs 0 < smallest < largest and width > 0");
  const double steps_needed = std::log(largest / smallest) / std::log1p(width);
  int32_t levels = 0;
  while (static_cast<double>(int64_t{1} << levels) < steps_needed && levels < 62) ++levels;
  return levels;
}

FractionLattice lattice_for(double smallest, double largest, double width) {
  const int32_t levels = lattice_levels_for(smallest, largest, width);
  check_invariant(levels <= max_lattice_levels, "lattice finer than max_lattice_levels");
  return {smallest, largest, levels};
}

const char* search_outcome_name(SearchOutcome outcome) {
  switch (outcome) {
    case SearchOutcome::pending:
      return "pending";
    case SearchOutcome::bracketed:
      return "bracketed";
    case SearchOutcome::below_range:
      return "below_range";
    case SearchOutcome::not_reached:
      return "not_reached";
  }
  return "?";
}

namespace {

// Replays one search: each `ask` either returns the known result of a point or records that the
// point is needed, and the walk stops at the first point it cannot pass.
class SearchWalk {
 public:
  SearchWalk(int32_t levels, const CrossedAt& crossed)
      : last_(int64_t{1} << levels), crossed_(crossed) {}

  SearchState run(const std::optional<Bracket>& start) {
    if (!start) return cold();
    return warm(*start);
  }

 private:
  std::optional<bool> ask(int64_t j) {
    const std::optional<bool> result = crossed_(j);
    if (result) {
      ++state_.visited;
    } else {
      state_.needed.push_back(j);
    }
    return result;
  }
  SearchState finish(SearchOutcome outcome, Bracket bracket = {}) {
    state_.outcome = outcome;
    state_.bracket = bracket;
    state_.needed.clear();
    return state_;
  }
  SearchState waiting() {
    std::sort(state_.needed.begin(), state_.needed.end());
    state_.needed.erase(std::unique(state_.needed.begin(), state_.needed.end()),
                        state_.needed.end());
    return state_;
  }

  // Both end points (asked together: independent), then bisection.
  SearchState cold() {
    const std::optional<bool> at_first = ask(0), at_last = ask(last_);
    if (at_first && *at_first) return finish(SearchOutcome::below_range);
    if (at_last && !*at_last) return finish(SearchOutcome::not_reached);
    if (!at_first || !at_last) return waiting();
    return bisect(0, last_);
  }

  SearchState warm(Bracket start) {
    const std::optional<bool> at_below = ask(start.below), at_above = ask(start.above);
    if (!at_below || !at_above) return waiting();
    if (*at_below) return gallop_down(start.below);
    if (!*at_above) return gallop_up(start.above);
    return bisect(start.below, start.above);
  }

  // Crossed at `hi`: probes hi - 1, hi - 2, hi - 4, ... (clamped at 0) until one is not crossed.
  SearchState gallop_down(int64_t hi) {
    for (int64_t step = 1;; step *= 2) {
      if (hi == 0) return finish(SearchOutcome::below_range);
      const int64_t probe = std::max<int64_t>(0, hi - step);
      const std::optional<bool> crossed = ask(probe);
      if (!crossed) return waiting();
      if (!*crossed) return bisect(probe, hi);
      hi = probe;
    }
  }

  // Not crossed at `lo`: probes lo + 1, lo + 2, lo + 4, ... (clamped at the last point).
  SearchState gallop_up(int64_t lo) {
    for (int64_t step = 1;; step *= 2) {
      if (lo == last_) return finish(SearchOutcome::not_reached);
      const int64_t probe = std::min(last_, lo + step);
      const std::optional<bool> crossed = ask(probe);
      if (!crossed) return waiting();
      if (*crossed) return bisect(lo, probe);
      lo = probe;
    }
  }

  // Not crossed at `lo`, crossed at `hi`: halves [lo, hi] down to adjacent points.
  SearchState bisect(int64_t lo, int64_t hi) {
    while (hi - lo > 1) {
      const int64_t middle = lo + (hi - lo) / 2;
      const std::optional<bool> crossed = ask(middle);
      if (!crossed) return waiting();
      (*crossed ? hi : lo) = middle;
    }
    return finish(SearchOutcome::bracketed, {lo, hi});
  }

  int64_t last_;
  const CrossedAt& crossed_;
  SearchState state_;
};

}  // namespace

SearchState walk_search(int32_t lattice_levels, const std::optional<Bracket>& start,
                        const CrossedAt& crossed) {
  check_invariant(lattice_levels >= 0 && lattice_levels <= 62, "lattice levels outside 0..62");
  if (start) {
    check_invariant(start->below >= 0 && start->above == start->below + 1 &&
                        start->above <= (int64_t{1} << lattice_levels),
                    "a warm start must be two adjacent lattice points");
  }
  return SearchWalk(lattice_levels, crossed).run(start);
}

}  // namespace fracsweep
