#include "fracsweep/io/trial_columns.hpp"

namespace fracsweep {

std::vector<JobTrialColumn> job_trial_columns(bool reference,
                                              const std::vector<std::string>& probe_kinds) {
  std::vector<JobTrialColumn> columns;
  for (const TrialColumn& column : trial_columns) columns.emplace_back(column);
  if (reference) {
    for (const TrialColumn& column : reference_columns) columns.emplace_back(column);
  }
  for (size_t k = 0; k < probe_kinds.size(); ++k) {
    for (const ProbeColumnTemplate& probe : probe_column_templates) {
      std::string meaning(probe.meaning);
      meaning.replace(meaning.find("{kind}"), 6, probe_kinds[k]);
      columns.emplace_back("probe_" + probe_kinds[k] + std::string(probe.suffix),
                           std::string(probe.unit), meaning, probe.field, static_cast<int>(k));
    }
  }
  return columns;
}

std::string probe_kind_of_column(const std::string& name) {
  if (!name.starts_with("probe_")) return "";
  for (const ProbeColumnTemplate& probe : probe_column_templates) {
    if (name.size() > 6 + probe.suffix.size() && name.ends_with(probe.suffix)) {
      return name.substr(6, name.size() - 6 - probe.suffix.size());
    }
  }
  return "";
}

}  // namespace fracsweep
