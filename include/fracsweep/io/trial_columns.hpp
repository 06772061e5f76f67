#pragma once
// The per-trial columns of the results file, described once. Each entry gives a column's name,
// unit, meaning and where its value lives (a TrialRow field, a TrialMetrics field, or a label
// the writer derives from the job); the stored type follows from the field. The writer
// (/trials/<column> datasets and /trials_table fields, in this order), the reader (merge and
// resume) and the schema attributes all iterate this table, so a new metric is one new entry.
//
// Two families of columns are present only when a job asks for them (optional_trial_columns):
// the comparison with a reference checkpoint (some model line has reference=NAME) and two
// columns per behaviour-probe kind ([eval] probes). They follow the fixed columns.
//
// In the file, every /trials/<column> carries long_name = meaning and, when the unit is not
// empty, units = unit (CF conventions: identifiers, labels and counts carry no units); the
// /trials group lists the whole table in the string-array attributes column_names,
// column_types, column_units and column_long_names.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// Columns that are not stored in a TrialRow: labels the writer derives from the job and the
// model, and the reader does not read back.
enum class TrialLabel { model, strategy, stored_dtype };

// Where a column's values live.
// PerProbeKind members hold one value per probe kind; the column names its kind.
using TrialField = std::variant<int32_t TrialRow::*, int64_t TrialRow::*, double TrialRow::*,
                                int64_t TrialMetrics::*, double TrialMetrics::*,
                                PerProbeKind TrialMetrics::*, TrialLabel>;

enum class ColumnType { int32, int64, float64, text };

// "int32", "int64", "float64", "str" (the words of the README's column table).
constexpr std::string_view column_type_name(ColumnType type) {
  switch (type) {
    case ColumnType::int32:
      return "int32";
    case ColumnType::int64:
      return "int64";
    case ColumnType::float64:
      return "float64";
    case ColumnType::text:
      return "str";
  }
  return "";
}

struct TrialColumn {
  std::string_view name;
  std::string_view unit;     // CF units; empty when the column has none
  std::string_view meaning;  // stored as the dataset's long_name
  TrialField field;
  bool status_flags = false;  // carries CF flag_values / flag_meanings of TrialStatus

  constexpr ColumnType type() const {
    return std::visit(
        [](auto member) {
          using Member = decltype(member);
          if constexpr (std::is_same_v<Member, TrialLabel>) {
            return ColumnType::text;
          } else if constexpr (std::is_same_v<Member, int32_t TrialRow::*>) {
            return ColumnType::int32;
          } else if constexpr (std::is_same_v<Member, double TrialRow::*> ||
                               std::is_same_v<Member, double TrialMetrics::*> ||
                               std::is_same_v<Member, PerProbeKind TrialMetrics::*>) {
            return ColumnType::float64;
          } else {
            return ColumnType::int64;
          }
        },
        field);
  }
};

// A column of one job's file: a fixed column, or an optional one with its name made for the job
// (`kind` indexes PerProbeKind members; -1 otherwise).
struct JobTrialColumn {
  std::string name;
  std::string unit;
  std::string meaning;
  TrialField field;
  bool status_flags = false;
  int kind = -1;

  explicit JobTrialColumn(const TrialColumn& column)
      : name(column.name),
        unit(column.unit),
        meaning(column.meaning),
        field(column.field),
        status_flags(column.status_flags) {}
  JobTrialColumn(std::string name_, std::string unit_, std::string meaning_, TrialField field_,
                 int kind_ = -1)
      : name(std::move(name_)),
        unit(std::move(unit_)),
        meaning(std::move(meaning_)),
        field(field_),
        kind(kind_) {}
  ColumnType type() const { return TrialColumn{"", "", "", field}.type(); }
};

// Calls `use(value)` with a reference to the row's value of a TrialRow or TrialMetrics column
// (const when `row` is const) and returns true; returns false for label columns.
template <typename Column, typename Row, typename Use>
bool with_trial_value(const Column& column, Row& row, Use&& use) {
  return std::visit(
      [&](auto member) {
        using Member = decltype(member);
        if constexpr (std::is_same_v<Member, TrialLabel>) {
          return false;
        } else if constexpr (std::is_same_v<Member, PerProbeKind TrialMetrics::*>) {
          if constexpr (std::is_same_v<Column, JobTrialColumn>) {
            use((row.metrics.*member)[static_cast<size_t>(column.kind)]);
            return true;
          }
          return false;
        } else if constexpr (std::is_member_object_pointer_v<Member> &&
                             std::is_invocable_v<Member, decltype(row.metrics)&>) {
          use(row.metrics.*member);
          return true;
        } else {
          use(row.*member);
          return true;
        }
      },
      column.field);
}

// Schema order: the order of the /trials datasets and of the /trials_table fields.
inline constexpr std::array trial_columns = {
    TrialColumn{"trial", "", "trial id", &TrialRow::trial},
    TrialColumn{"model_idx", "", "index into /grid/model", &TrialRow::model_idx},
    TrialColumn{"strategy_idx", "", "index into /grid/strategy", &TrialRow::strategy_idx},
    TrialColumn{"fraction_idx", "", "index into /grid/fraction", &TrialRow::amount_idx},
    TrialColumn{"seed_idx", "", "index into /grid/seed", &TrialRow::seed_idx},
    TrialColumn{"model", "", "model label", TrialLabel::model},
    TrialColumn{"strategy", "", "strategy label", TrialLabel::strategy},
    TrialColumn{"stored_dtype", "",
                "stored number formats of the in-scope tensors (f32, f16, bf16, joined by +)",
                TrialLabel::stored_dtype},
    TrialColumn{"fraction", "1", "fraction of in-scope parameters (k / n_scope for count entries)",
                &TrialRow::fraction},
    TrialColumn{"seed", "", "trial seed", &TrialRow::seed},
    TrialColumn{"k", "", "parameters perturbed (bfa: the flip budget)", &TrialRow::k},
    TrialColumn{"k_changed", "", "perturbed parameters whose stored bits changed",
                &TrialRow::k_changed},
    TrialColumn{"n_scope", "", "in-scope parameters", &TrialRow::n_scope},
    TrialColumn{"positions", "", "predicted positions evaluated", &TrialMetrics::positions},
    TrialColumn{"nonfinite_positions", "", "positions whose logits contain NaN or Inf",
                &TrialMetrics::nonfinite_positions},
    TrialColumn{"mean_nll", "nats", "mean negative log-likelihood of the next token",
                &TrialMetrics::mean_nll},
    TrialColumn{"perplexity", "1", "exp(mean_nll)", &TrialMetrics::perplexity},
    TrialColumn{"mean_nll_finite", "nats", "mean negative log-likelihood over finite positions",
                &TrialMetrics::mean_nll_finite},
    TrialColumn{"accuracy", "1", "fraction of positions whose argmax is the next token",
                &TrialMetrics::accuracy},
    TrialColumn{"sdc_rate", "1",
                "fraction of positions right before the perturbation and wrong after",
                &TrialMetrics::sdc_rate},
    TrialColumn{"top1_agreement", "1",
                "fraction of positions whose argmax equals the unperturbed argmax",
                &TrialMetrics::top1_agreement},
    TrialColumn{"mean_kl", "nats", "mean KL(unperturbed || perturbed) over positions",
                &TrialMetrics::mean_kl},
    TrialColumn{"max_kl", "nats", "max KL(unperturbed || perturbed) over positions",
                &TrialMetrics::max_kl},
    TrialColumn{"mean_kl_finite", "nats", "mean KL(unperturbed || perturbed) over finite positions",
                &TrialMetrics::mean_kl_finite},
    TrialColumn{"greedy_match", "", "leading greedy tokens equal to the unperturbed continuation",
                &TrialMetrics::greedy_match},
    TrialColumn{"greedy_length", "", "length of the unperturbed greedy continuation",
                &TrialMetrics::greedy_length},
    TrialColumn{"wall_s", "s", "wall time of perturb, forward, metrics and restore",
                &TrialRow::wall_s},
    TrialColumn{"rank", "", "MPI rank that ran the trial", &TrialRow::rank},
    TrialColumn{"status", "", "trial status", &TrialRow::status, /*status_flags=*/true},
};

// Present when some model of the job has reference=NAME (NaN for models without one).
inline constexpr std::array reference_columns = {
    TrialColumn{"top1_agreement_ref", "1",
                "fraction of positions whose argmax equals the reference model's argmax",
                &TrialMetrics::top1_agreement_ref},
    TrialColumn{"mean_kl_ref", "nats", "mean KL(reference || perturbed) over positions",
                &TrialMetrics::mean_kl_ref},
};

// Per probe kind K: "probe_" + K + suffix, meaning with {kind} replaced by K.
struct ProbeColumnTemplate {
  std::string_view suffix;
  std::string_view unit;
  std::string_view meaning;
  PerProbeKind TrialMetrics::*field;
};
inline constexpr std::array probe_column_templates = {
    ProbeColumnTemplate{"_rate", "1",
                        "fraction of {kind} probe prompts whose greedy continuation begins with "
                        "the target",
                        &TrialMetrics::probe_rate},
    ProbeColumnTemplate{"_logprob", "nats",
                        "mean over {kind} probe prompts of log p(target | prompt)",
                        &TrialMetrics::probe_logprob},
};

// The columns of a job's file: the fixed table, then the reference columns when `reference`,
// then the probe columns of each kind (in the kinds' order).
std::vector<JobTrialColumn> job_trial_columns(bool reference,
                                              const std::vector<std::string>& probe_kinds);

// The probe kind a column name belongs to ("probe_trigger_rate" -> "trigger"), or "" when the
// name is not a probe column.
std::string probe_kind_of_column(const std::string& name);

}  // namespace fracsweep
