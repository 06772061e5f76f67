// The sweep axes of a job file: amounts (fractions, fractions_log, counts), seeds,
// strategies and record_sites.
#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

#include "fracsweep/util/text.hpp"
#include "job_reader.hpp"

namespace fracsweep {

namespace {

// `value` rounded to 12 significant digits, so log-spaced fractions print cleanly.
double round_to_12_digits(double value) {
  char buffer[32];  // "d.ddddddddddde-xxx"
  const auto written =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific, 11);
  double rounded = value;
  std::from_chars(buffer, written.ptr, rounded);
  return rounded;
}

}  // namespace

namespace job_file {

// Explicit fractions, log-spaced fractions and counts: the fractions ascending without exact
// duplicates, then the counts ascending without duplicates.
std::vector<Amount> parse_amounts(const JobReader& reader) {
  std::set<double> fractions;
  for (const std::string& token : reader.list(key_fractions, "fractions in (0, 1]")) {
    fractions.insert(reader.fraction(key_fractions, token));
  }
  std::vector<std::string> log_tokens = reader.list(key_fractions_log, "FROM TO PER_DECADE");
  if (!log_tokens.empty()) {
    if (log_tokens.size() != 3) {
      reader.fail(key_fractions_log, "expected three values 'FROM TO PER_DECADE', found " +
                                         std::to_string(log_tokens.size()));
    }
    const double from = reader.fraction(key_fractions_log, log_tokens[0]);
    const double to = reader.fraction(key_fractions_log, log_tokens[1]);
    const int64_t per_decade =
        reader.number<int64_t>(key_fractions_log, log_tokens[2], "an integer points-per-decade");
    if (from > to) {
      reader.fail(key_fractions_log,
                  "FROM " + log_tokens[0] + " is larger than TO " + log_tokens[1]);
    }
    if (per_decade < 1) {
      reader.fail(key_fractions_log, "points per decade must be >= 1, found " + log_tokens[2]);
    }
    const double estimated_points = std::log10(to / from) * static_cast<double>(per_decade) + 2;
    if (estimated_points > static_cast<double>(max_axis_length)) {
      reader.fail(key_fractions_log,
                  "would produce more than " + std::to_string(max_axis_length) + " fractions");
    }
    for (double value : log_spaced(from, to, per_decade)) fractions.insert(value);
  }
  std::set<int64_t> counts;
  for (const std::string& token : reader.list(key_counts, "site counts >= 1")) {
    const int64_t count = reader.number<int64_t>(key_counts, token, "an integer count >= 1");
    if (count < 1) reader.fail(key_counts, "count " + token + " is below 1");
    counts.insert(count);
  }

  std::vector<Amount> amounts;
  for (double value : fractions) amounts.push_back(Amount{.is_count = false, .fraction = value});
  for (int64_t count : counts) amounts.push_back(Amount{.is_count = true, .count = count});
  if (amounts.empty()) {
    throw InputError(in_file(reader.job_path(),
                             "no amounts: give at least one of '" + std::string(key_fractions) +
                                 "', '" + key_fractions_log + "' or '" + key_counts + "'"));
  }
  if (static_cast<int64_t>(amounts.size()) > max_axis_length) {
    reader.fail(key_fractions, "more than " + std::to_string(max_axis_length) + " amounts");
  }
  return amounts;
}

namespace {

// "0-4 10 12" under `key`: single non-negative integers and inclusive ranges FIRST-LAST, in the
// order written, none twice, at most max_axis_length in all (checked before a range is
// expanded). `what` names one entry in messages ("seed", "trial id").
std::vector<int64_t> parse_id_list(const JobReader& reader, const char* key,
                                   const std::string& what) {
  const std::string expected = what + "s >= 0 and ranges FIRST-LAST, e.g. '0-4 10 12'";
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  for (const std::string& token : reader.list(key, expected)) {
    // A '-' after the first character separates a range; a leading '-' is a minus sign.
    const size_t dash = token.find('-', 1);
    const std::string first_text = token.substr(0, dash);
    const int64_t first = reader.number<int64_t>(key, first_text, expected);
    int64_t last = first;
    if (dash != std::string::npos) {
      last = reader.number<int64_t>(key, token.substr(dash + 1), expected);
      if (last < first) reader.fail(key, "range '" + token + "' runs backwards");
    }
    if (first < 0) reader.fail(key, what + " " + first_text + " is negative");
    if (last - first >= max_axis_length - static_cast<int64_t>(ids.size())) {
      reader.fail(key, "'" + token + "' makes more than " + std::to_string(max_axis_length) + " " +
                           what + "s, the limit for one job (split the job and merge the results)");
    }
    for (int64_t offset = 0; offset <= last - first; ++offset) {
      const int64_t id = first + offset;
      if (!seen.insert(id).second) {
        reader.fail(key, what + " " + std::to_string(id) + " is listed twice (in '" + token + "')");
      }
      ids.push_back(id);
    }
  }
  return ids;
}

}  // namespace

std::vector<int64_t> parse_seeds(const JobReader& reader) {
  std::vector<int64_t> seeds = parse_id_list(reader, key_seeds, "seed");
  if (seeds.empty()) {
    throw InputError(
        in_file(reader.job_path(), "missing required key '" + std::string(key_seeds) + "'"));
  }
  return seeds;
}

void parse_strategies(const JobReader& reader, JobConfig& job) {
  std::vector<std::string> texts = reader.repeated_text(key_strategy);
  if (texts.empty()) {
    throw InputError(
        in_file(reader.job_path(), "missing required key '" + std::string(key_strategy) + "'"));
  }
  if (static_cast<int64_t>(texts.size()) > max_axis_length) {
    reader.fail(key_strategy, "more than " + std::to_string(max_axis_length) + " strategies");
  }
  std::unordered_map<std::string, size_t> index_of_canonical;
  for (const std::string& text : texts) {
    const std::string where =
        in_file(reader.job_path(), "key '" + std::string(key_strategy) + "' ('" + text + "')");
    StrategySpec strategy = parse_strategy(text, where);
    const auto [earlier, inserted] =
        index_of_canonical.emplace(strategy.canonical(), job.strategies.size());
    if (!inserted) {
      reader.fail(key_strategy, "'" + text + "' repeats '" + job.strategy_texts[earlier->second] +
                                    "' (both are " + earlier->first + ")");
    }
    job.strategies.push_back(std::move(strategy));
    job.strategy_texts.push_back(text);
  }
}

int64_t checked_trial_count(const JobReader& reader, const JobConfig& job) {
  // Counted in floating point first: the product of four axes of up to 10^6 overflows int64.
  double per_model = 0;
  for (const StrategySpec& strategy : job.strategies) {
    per_model += static_cast<double>(job.amounts.size()) *
                 static_cast<double>(strategy.deterministic() ? 1 : job.seeds.size());
  }
  const double n_trials = per_model * static_cast<double>(job.models.size());
  if (n_trials > static_cast<double>(max_trials)) {
    reader.fail(key_seeds,
                "the grid has " + shortest_number_text(n_trials) + " trials (models " +
                    std::to_string(job.models.size()) + " x strategies " +
                    std::to_string(job.strategies.size()) + " x amounts " +
                    std::to_string(job.amounts.size()) + " x seeds " +
                    std::to_string(job.seeds.size()) +
                    "; deterministic strategies run one seed), more than the limit of " +
                    std::to_string(max_trials) +
                    " per job: split it into several jobs (e.g. by seeds) and `fracsweep merge` "
                    "the results");
  }
  return static_cast<int64_t>(n_trials);
}

// "METRIC<VALUE" or "METRIC>VALUE" tokens; the width; then the lattice from the smallest to the
// largest fraction of the amount axis replaces it.
void parse_adaptive(const JobReader& reader, JobConfig& job) {
  const std::vector<std::string> tokens =
      reader.list(key_adaptive, "criteria METRIC<VALUE or METRIC>VALUE");
  if (tokens.empty()) {
    if (reader.optional_text(key_adaptive_width)) {
      reader.fail(key_adaptive_width, "is given without '" + std::string(key_adaptive) + "'");
    }
    return;
  }
  AdaptiveSearch search;
  std::set<std::string> seen;
  for (const std::string& token : tokens) {
    const size_t op = token.find_first_of("<>");
    if (op == std::string::npos || op == 0 || op + 1 == token.size()) {
      reader.fail(key_adaptive, "cannot parse '" + token +
                                    "'; expected METRIC<VALUE or METRIC>VALUE, e.g. "
                                    "top1_agreement<0.5");
    }
    AdaptiveCriterion criterion{.metric = token.substr(0, op), .below = token[op] == '<'};
    criterion.value = reader.number<double>(key_adaptive, token.substr(op + 1), "a number");
    if (!std::isfinite(criterion.value)) {
      reader.fail(key_adaptive, "the value in '" + token + "' must be finite");
    }
    if (!seen.insert(criterion.text()).second) {
      reader.fail(key_adaptive, "criterion '" + token + "' is given twice");
    }
    search.criteria.push_back(criterion);
  }
  if (std::optional<std::string> width = reader.optional_text(key_adaptive_width)) {
    const std::string expected = "a relative width > 0, e.g. 0.1";
    search.width = reader.number<double>(
        key_adaptive_width, reader.trimmed_single(key_adaptive_width, *width, expected), expected);
    if (!(search.width > 0) || !std::isfinite(search.width)) {
      reader.fail(key_adaptive_width, "must be finite and > 0, found " + *width);
    }
  }
  std::vector<double> fractions;
  for (const Amount& amount : job.amounts) {
    if (amount.is_count) {
      reader.fail(key_counts,
                  "an adaptive search needs fractions, not counts (the lattice is "
                  "log-spaced between the smallest and largest fraction)");
    }
    fractions.push_back(amount.fraction);
  }
  const auto [smallest, largest] = std::minmax_element(fractions.begin(), fractions.end());
  if (!(*smallest < *largest)) {
    reader.fail(key_adaptive,
                "needs a range of fractions to search: give the smallest and the "
                "largest, e.g. 'fractions_log = 1e-6 1 1' or "
                "'fractions = 1e-6 1'");
  }
  const int32_t levels = lattice_levels_for(*smallest, *largest, search.width);
  if (levels > max_lattice_levels) {
    reader.fail(key_adaptive_width,
                "a width of " + shortest_number_text(search.width) + " from " +
                    shortest_number_text(*smallest) + " to " + shortest_number_text(*largest) +
                    " needs 2^" + std::to_string(levels) + " lattice steps, more than 2^" +
                    std::to_string(max_lattice_levels) + ": choose a wider bracket");
  }
  search.lattice = FractionLattice{*smallest, *largest, levels};
  job.amounts.clear();
  for (double fraction : search.lattice.fractions()) {
    job.amounts.push_back(Amount{.is_count = false, .fraction = fraction});
  }
  job.adaptive = std::move(search);
}

// Trial ids (single ids and ranges, as for seeds), ascending and unique, each inside the grid.
std::vector<int64_t> parse_record_sites(const JobReader& reader, int64_t n_trials) {
  std::vector<int64_t> ids = parse_id_list(reader, key_record_sites, "trial id");
  std::sort(ids.begin(), ids.end());
  if (!ids.empty() && ids.back() >= n_trials) {
    reader.fail(key_record_sites, "trial id " + std::to_string(ids.back()) +
                                      " is outside the grid (ids 0.." +
                                      std::to_string(n_trials - 1) + ")");
  }
  return ids;
}

}  // namespace job_file

int64_t Amount::sites(int64_t n_scope) const {
  if (n_scope <= 0) return 0;
  const int64_t k = is_count ? count : std::llround(fraction * static_cast<double>(n_scope));
  return std::min(k, n_scope);
}

std::string Amount::label() const {
  return is_count ? "count=" + std::to_string(count) : shortest_number_text(fraction);
}

bool AdaptiveCriterion::holds(double metric_value) const {
  if (!std::isfinite(metric_value)) return true;  // destroyed outputs: behaviour changed
  return below ? metric_value < value : metric_value > value;
}

std::string AdaptiveCriterion::text() const {
  return metric + (below ? "<" : ">") + shortest_number_text(value);
}

std::vector<double> log_spaced(double from, double to, int64_t per_decade) {
  check_invariant(from > 0.0 && from <= to && per_decade >= 1,
                  "log_spaced needs 0 < from <= to and per_decade >= 1");
  // Points this close below `to` count as `to`, so rounding never duplicates the end point.
  const double below_to = to * (1.0 - 1e-9);
  std::vector<double> values;
  if (from < below_to) values.push_back(from);
  const double first_exponent = std::log10(from);
  for (int64_t i = 1;; ++i) {
    const double exponent =
        first_exponent + static_cast<double>(i) / static_cast<double>(per_decade);
    const double value = round_to_12_digits(std::pow(10.0, exponent));
    if (!(value < below_to)) break;
    values.push_back(value);
  }
  values.push_back(to);
  return values;
}

}  // namespace fracsweep
