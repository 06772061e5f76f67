#pragma once
// Adaptive search for the critical fraction f* ([sweep] adaptive): instead of every fraction of
// a grid, each (model, strategy, seed) looks for the smallest fraction at which a criterion
// holds ("behaviour changed"), bisecting in log f.
//
// The fractions a search may visit are the points of a lattice, log-spaced from the job's
// smallest to its largest fraction in 2^levels equal steps:
//   fraction(j) = exp(ln(smallest) + j * (ln(largest) - ln(smallest)) / 2^levels), j = 0 ..
//   2^levels
// (the end points exact), with levels the smallest for which one step is at most 1 + width.
// The lattice is the job's amount axis, so every trial a search runs is a grid trial, keyed
// by its values like any other: the same row a full grid of these fractions would hold.
//
// One search is a pure function of the results it has seen (walk_search): it is replayed from
// the rows at every step, so a resumed run, or any rank count, makes the same decisions.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace fracsweep {

struct FractionLattice {
  double smallest = 0.0;  // fraction(0)
  double largest = 0.0;   // fraction(last())
  int32_t levels = 0;     // 2^levels steps

  int64_t last() const { return int64_t{1} << levels; }
  double fraction(int64_t j) const;
  std::vector<double> fractions() const;  // (last() + 1) every point, ascending
};

// The coarsest lattice from `smallest` to `largest` (0 < smallest < largest) whose steps are
// at most a factor 1 + width (width > 0); levels at most max_lattice_levels.
inline constexpr int32_t max_lattice_levels = 19;
FractionLattice lattice_for(double smallest, double largest, double width);
// Levels lattice_for would choose; may exceed max_lattice_levels (callers report that).
int32_t lattice_levels_for(double smallest, double largest, double width);

enum class SearchOutcome {
  pending,      // `needed` lists the lattice points to evaluate next (empty: waits for another)
  bracketed,    // not crossed at `below`, crossed at `above` = below + 1
  below_range,  // crossed already at point 0: f* <= smallest
  not_reached,  // not crossed at the last point: f* > largest
};
const char* search_outcome_name(SearchOutcome outcome);  // "pending", "bracketed", ...

// Lattice points [below, above] of a bracketed search (above = below + 1).
struct Bracket {
  int64_t below = 0;
  int64_t above = 0;
};

struct SearchState {
  SearchOutcome outcome = SearchOutcome::pending;
  std::vector<int64_t> needed;  // pending: lattice points without a result yet, ascending
  Bracket bracket;              // bracketed
  int64_t visited = 0;          // lattice points the search consulted (with results)
};

// Whether the criterion holds at lattice point j: nullopt while point j has no result.
using CrossedAt = std::function<std::optional<bool>(int64_t)>;

// One search on lattice `lattice_levels`, given what is known. Without `start` (cold), it
// evaluates both end points, then bisects. With `start` (warm: the bracket another seed
// found), it evaluates the two points of `start`; when the crossing lies outside them it gallops
// away from them in steps of 1, 2, 4, ... lattice points until it is bracketed (or censored at
// an end), then bisects. Bisection of [lo, hi] evaluates lo + (hi - lo) / 2.
SearchState walk_search(int32_t lattice_levels, const std::optional<Bracket>& start,
                        const CrossedAt& crossed);

// What one search of an adaptive job found (the /adaptive table of the results file).
struct SearchResult {
  int32_t model_idx = 0;
  int32_t strategy_idx = 0;
  int32_t seed_idx = 0;
  int32_t criterion_idx = 0;  // index into the job's criteria
  SearchOutcome outcome = SearchOutcome::pending;
  double fraction_below = 0.0;  // largest fraction seen not crossed (NaN: none)
  double fraction_above = 0.0;  // smallest fraction seen crossed (NaN: none)
  int64_t trials = 0;           // trials the search consulted
};

}  // namespace fracsweep
