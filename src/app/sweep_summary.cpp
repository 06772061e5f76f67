#include "fracsweep/app/sweep_summary.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace fracsweep {

namespace {

// Index of the fraction entry of the amount axis nearest `target` in log space, or -1.
int32_t nearest_fraction(const std::vector<Amount>& amounts, double target) {
  int32_t best = -1;
  for (size_t i = 0; i < amounts.size(); ++i) {
    if (amounts[i].is_count) continue;
    const double distance = std::fabs(std::log(amounts[i].fraction / target));
    if (best < 0 ||
        distance < std::fabs(std::log(amounts[static_cast<size_t>(best)].fraction / target))) {
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

double median(std::vector<double> values) {
  if (values.empty()) return not_a_number;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return (values[(n - 1) / 2] + values[n / 2]) / 2;
}

// The median of f* estimates in log space (the geometric mean of the two middle values for an
// even count); censored searches take part as -inf (at or below the smallest fraction) and +inf
// (above the largest), so the median is known unless it falls on one of them.
std::string median_fraction_text(std::vector<double> estimates, const FractionLattice& lattice) {
  if (estimates.empty()) return "-";
  std::sort(estimates.begin(), estimates.end());
  const size_t n = estimates.size();
  const double low = estimates[(n - 1) / 2], high = estimates[n / 2];
  char text[32];
  if (std::isinf(low) && low < 0) {
    std::snprintf(text, sizeof text, "<=%.4g", lattice.smallest);
  } else if (std::isinf(high) && high > 0) {
    std::snprintf(text, sizeof text, ">%.4g", lattice.largest);
  } else {
    std::snprintf(text, sizeof text, "%.4g", std::sqrt(low * high));
  }
  return text;
}

// Per model, strategy and criterion: the median over seeds of each search's f* estimate (the
// geometric midpoint of its bracket), and how the searches ended.
void print_searches(const JobConfig& job, const std::vector<SearchResult>& searches,
                    std::FILE* out) {
  const AdaptiveSearch& adaptive = *job.adaptive;
  constexpr double infinity = std::numeric_limits<double>::infinity();
  std::fprintf(out,
               "\ncritical fraction f* (median over seeds of each bracket's geometric midpoint; "
               "brackets at most %g wide)\n%-14s %-40s %-22s %12s  %s\n",
               adaptive.width, "model", "strategy", "criterion", "median f*", "searches");
  for (size_t m = 0; m < job.models.size(); ++m) {
    for (size_t s = 0; s < job.strategies.size(); ++s) {
      for (size_t c = 0; c < adaptive.criteria.size(); ++c) {
        std::vector<double> estimates;  // (finished seeds)
        int64_t bracketed = 0, below = 0, not_reached = 0, pending = 0;
        for (const SearchResult& search : searches) {
          if (search.model_idx != static_cast<int32_t>(m) ||
              search.strategy_idx != static_cast<int32_t>(s) ||
              search.criterion_idx != static_cast<int32_t>(c))
            continue;
          switch (search.outcome) {
            case SearchOutcome::bracketed:
              ++bracketed;
              estimates.push_back(std::sqrt(search.fraction_below * search.fraction_above));
              break;
            case SearchOutcome::below_range:
              ++below;
              estimates.push_back(-infinity);
              break;
            case SearchOutcome::not_reached:
              ++not_reached;
              estimates.push_back(infinity);
              break;
            case SearchOutcome::pending:
              ++pending;
              break;
          }
        }
        std::string counts = std::to_string(bracketed) + " bracketed";
        if (below > 0) counts += ", " + std::to_string(below) + " at or below the smallest";
        if (not_reached > 0) counts += ", " + std::to_string(not_reached) + " above the largest";
        if (pending > 0) counts += ", " + std::to_string(pending) + " unfinished";
        std::fprintf(out, "%-14s %-40s %-22s %12s  %s\n", job.models[m].name.c_str(),
                     job.strategies[s].canonical().c_str(), adaptive.criteria[c].text().c_str(),
                     median_fraction_text(std::move(estimates), adaptive.lattice).c_str(),
                     counts.c_str());
      }
    }
  }
}

}  // namespace

// The headline numbers of the public debate, per model and strategy: top-1 agreement with the
// unperturbed model (median over seeds) near f = 0.1% and f = 25%.
void print_summary(const JobConfig& job, const std::vector<ModelSummary>& models,
                   const std::vector<TrialRow>& rows, const std::vector<SearchResult>& searches,
                   std::FILE* out) {
  const int32_t low = nearest_fraction(job.amounts, 1e-3),
                high = nearest_fraction(job.amounts, 0.25);
  for (const ModelSummary& m : models) {
    const TrialMetrics& base = m.baseline.metrics;
    if (m.format == "sequential") {
      std::fprintf(out, "baseline %s: accuracy %.4f on %lld examples, mean cross-entropy %.4f\n",
                   m.name.c_str(), base.accuracy, static_cast<long long>(base.positions),
                   base.mean_nll);
    } else {
      std::fprintf(out,
                   "baseline %s: mean NLL %.4f, perplexity %.3f, next-token accuracy %.4f over "
                   "%lld positions, greedy continuation %zu tokens\n",
                   m.name.c_str(), base.mean_nll, base.perplexity, base.accuracy,
                   static_cast<long long>(base.positions), m.baseline.greedy_ids.size());
    }
  }
  if (job.adaptive) {
    print_searches(job, searches, out);
    return;
  }
  if (low < 0) return;
  const auto label = [&](int32_t a) {
    char text[32];
    std::snprintf(text, sizeof text, "f=%.3g", job.amounts[static_cast<size_t>(a)].fraction);
    return std::string(text);
  };
  // One column per distinct fraction (a job of one fraction has one column).
  std::vector<int32_t> columns{low};
  if (high != low) columns.push_back(high);
  std::fprintf(out, "\ntop-1 agreement with the unperturbed model (median over seeds)\n%-14s %-44s",
               "model", "strategy");
  for (int32_t a : columns) std::fprintf(out, " %10s", label(a).c_str());
  std::fprintf(out, "\n");
  for (size_t m = 0; m < job.models.size(); ++m) {
    for (size_t s = 0; s < job.strategies.size(); ++s) {
      std::fprintf(out, "%-14s %-44s", job.models[m].name.c_str(),
                   job.strategies[s].canonical().c_str());
      for (int32_t a : columns) {
        std::vector<double> agreements;  // (seeds) top-1 agreement of this cell's trials
        for (const TrialRow& row : rows) {
          if (row.model_idx == static_cast<int32_t>(m) &&
              row.strategy_idx == static_cast<int32_t>(s) && row.amount_idx == a)
            agreements.push_back(row.metrics.top1_agreement);
        }
        std::fprintf(out, " %10.4f", median(agreements));
      }
      std::fprintf(out, "\n");
    }
  }
}

}  // namespace fracsweep
