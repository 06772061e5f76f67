#pragma once
// The summary `fracsweep run` prints when a sweep completes: each model's baseline, then top-1
// agreement with the unperturbed model per model and strategy near f = 0.1% and f = 25%; for an
// adaptive job instead, per model, strategy and criterion, the median f* over seeds.
#include <cstdio>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/adaptive.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

void print_summary(const JobConfig& job, const std::vector<ModelSummary>& models,
                   const std::vector<TrialRow>& rows, const std::vector<SearchResult>& searches,
                   std::FILE* out);

}  // namespace fracsweep
