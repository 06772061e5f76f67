#include "fracsweep/app/adaptive_sweep.hpp"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

constexpr double no_fraction = std::numeric_limits<double>::quiet_NaN();

// A column whose value is a metric of the trial (not an id, label or bookkeeping field).
bool is_metric_column(const JobTrialColumn& column) {
  return std::visit(
      [](auto member) {
        using Member = decltype(member);
        return std::is_same_v<Member, int64_t TrialMetrics::*> ||
               std::is_same_v<Member, double TrialMetrics::*> ||
               std::is_same_v<Member, PerProbeKind TrialMetrics::*>;
      },
      column.field);
}

double metric_value(const JobTrialColumn& column, const TrialRow& row) {
  double value = no_fraction;
  with_trial_value(column, row, [&](const auto& field) { value = static_cast<double>(field); });
  return value;
}

}  // namespace

RowsById index_rows(const std::vector<TrialResult>& results) {
  RowsById rows;
  rows.reserve(results.size());
  for (const TrialResult& result : results) rows.emplace(result.row.trial, &result.row);
  return rows;
}

AdaptiveSearches::AdaptiveSearches(const JobConfig& job, const Grid& grid, bool reference,
                                   const std::vector<std::string>& probe_kinds)
    : job_(job), grid_(grid), search_(job.adaptive.value()) {
  const std::vector<JobTrialColumn> columns = job_trial_columns(reference, probe_kinds);
  for (const AdaptiveCriterion& criterion : search_.criteria) {
    const auto found = std::find_if(columns.begin(), columns.end(), [&](const auto& column) {
      return column.name == criterion.metric && is_metric_column(column);
    });
    if (found == columns.end()) {
      std::vector<std::string> names;
      for (const JobTrialColumn& column : columns) {
        if (is_metric_column(column)) names.push_back(column.name);
      }
      throw InputError(in_file(job.path, "key 'sweep.adaptive': '" + criterion.metric +
                                             "' is not a metric of this job; expected one of " +
                                             join(names, ", ")));
    }
    metric_columns_.push_back(*found);
  }
}

int32_t AdaptiveSearches::seeds_for(int32_t strategy) const {
  const bool deterministic = job_.strategies[static_cast<size_t>(strategy)].deterministic();
  return deterministic ? std::min<int32_t>(1, static_cast<int32_t>(job_.seeds.size()))
                       : static_cast<int32_t>(job_.seeds.size());
}

template <typename Visit>
void AdaptiveSearches::walk_seeds(int32_t model, int32_t strategy, int32_t criterion,
                                  const RowsById& rows, Visit&& visit) const {
  const AdaptiveCriterion& rule = search_.criteria[static_cast<size_t>(criterion)];
  const JobTrialColumn& column = metric_columns_[static_cast<size_t>(criterion)];
  const auto walk = [&](int32_t seed, const std::optional<Bracket>& start) {
    const CrossedAt crossed = [&](int64_t point) -> std::optional<bool> {
      const auto found = rows.find(grid_.id_of(model, strategy, static_cast<int32_t>(point), seed));
      if (found == rows.end()) return std::nullopt;
      return rule.holds(metric_value(column, *found->second));
    };
    return walk_search(search_.lattice.levels, start, crossed);
  };
  // The first seed searches cold; once it is settled, every other seed starts from its bracket
  // (all at once: one level of dependency keeps the searches parallel).
  const SearchState first = walk(0, std::nullopt);
  visit(0, first);
  if (first.outcome == SearchOutcome::pending) return;
  const std::optional<Bracket> start =
      first.outcome == SearchOutcome::bracketed ? std::optional(first.bracket) : std::nullopt;
  for (int32_t seed = 1; seed < seeds_for(strategy); ++seed) visit(seed, walk(seed, start));
}

std::vector<int64_t> AdaptiveSearches::next_trials(int32_t model, const RowsById& rows) const {
  std::vector<int64_t> ids;
  for (int32_t strategy = 0; strategy < static_cast<int32_t>(job_.strategies.size()); ++strategy) {
    for (int32_t criterion = 0; criterion < static_cast<int32_t>(search_.criteria.size());
         ++criterion) {
      walk_seeds(model, strategy, criterion, rows, [&](int32_t seed, const SearchState& state) {
        for (int64_t point : state.needed) {
          ids.push_back(grid_.id_of(model, strategy, static_cast<int32_t>(point), seed));
        }
      });
    }
  }
  // Criteria may need the same trial.
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

std::vector<SearchResult> AdaptiveSearches::results(const RowsById& rows) const {
  std::vector<SearchResult> results;
  const FractionLattice& lattice = search_.lattice;
  for (int32_t model = 0; model < static_cast<int32_t>(job_.models.size()); ++model) {
    for (int32_t strategy = 0; strategy < static_cast<int32_t>(job_.strategies.size());
         ++strategy) {
      const size_t first = results.size();
      for (int32_t criterion = 0; criterion < static_cast<int32_t>(search_.criteria.size());
           ++criterion) {
        walk_seeds(model, strategy, criterion, rows, [&](int32_t seed, const SearchState& state) {
          SearchResult result{model,         strategy,    seed,        criterion,
                              state.outcome, no_fraction, no_fraction, state.visited};
          if (state.outcome == SearchOutcome::bracketed) {
            result.fraction_below = lattice.fraction(state.bracket.below);
            result.fraction_above = lattice.fraction(state.bracket.above);
          } else if (state.outcome == SearchOutcome::below_range) {
            result.fraction_above = lattice.smallest;
          } else if (state.outcome == SearchOutcome::not_reached) {
            result.fraction_below = lattice.largest;
          }
          results.push_back(result);
        });
        // Seeds waiting for the first seed's search have not started.
        for (int32_t seed = 0; seed < seeds_for(strategy); ++seed) {
          const bool listed =
              std::any_of(results.begin() + static_cast<std::ptrdiff_t>(first), results.end(),
                          [&](const SearchResult& r) {
                            return r.criterion_idx == criterion && r.seed_idx == seed;
                          });
          if (!listed) {
            results.push_back({model, strategy, seed, criterion, SearchOutcome::pending,
                               no_fraction, no_fraction, 0});
          }
        }
      }
      // (model, strategy, seed, criterion) order.
      std::stable_sort(results.begin() + static_cast<std::ptrdiff_t>(first), results.end(),
                       [](const SearchResult& a, const SearchResult& b) {
                         return std::pair(a.seed_idx, a.criterion_idx) <
                                std::pair(b.seed_idx, b.criterion_idx);
                       });
    }
  }
  return results;
}

int64_t AdaptiveSearches::trial_bound(int32_t model) const {
  // A cold search takes at most levels + 2 trials, a warm one at most 2 * levels + 4
  // (galloping, then bisecting what it galloped over); criteria may share trials.
  const int64_t levels = search_.lattice.levels;
  int64_t bound = 0;
  for (int32_t strategy = 0; strategy < static_cast<int32_t>(job_.strategies.size()); ++strategy) {
    const int64_t seeds = seeds_for(strategy);
    if (seeds == 0) continue;
    bound += static_cast<int64_t>(search_.criteria.size()) *
             ((levels + 2) + (seeds - 1) * (2 * levels + 4));
  }
  return std::min<int64_t>(bound, grid_.model_end(model) - grid_.model_begin(model));
}

}  // namespace fracsweep
