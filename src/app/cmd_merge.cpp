// `fracsweep merge`: shard files of one sweep (`fracsweep run --shard I/N`) into one results
// file equal to a single run of the whole grid (timing, rank and provenance aside).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <map>
#include <set>
#include <system_error>
#include <utility>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/io/results.hpp"
#include "fracsweep/par/sched.hpp"
#include "fracsweep/util/build_info.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

namespace {

// Refuses what cannot be a merge: an input that does not exist or is not a regular file, the
// same file given twice (under any name), and an output that is one of the inputs (--force
// would replace a shard with the merge of itself). Runs before any input is read.
void check_merge_paths(const std::vector<std::string>& inputs, const std::string& out) {
  namespace fs = std::filesystem;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::error_code error;
    const fs::file_status status = fs::status(inputs[i], error);
    check_input(fs::exists(status), in_file(inputs[i],
                                            "does not exist; expected a results file "
                                            "of fracsweep run"));
    check_input(fs::is_regular_file(status),
                in_file(inputs[i],
                        "is not a regular file; expected a results file of "
                        "fracsweep run"));
    for (size_t j = 0; j < i; ++j) {
      check_input(!fs::equivalent(inputs[i], inputs[j], error),
                  in_file(inputs[i],
                          "is given twice (also as " + inputs[j] + "); name each shard file once"));
    }
    check_input(!fs::equivalent(inputs[i], out, error),
                in_file(out, "is also an input of the merge (" + inputs[i] +
                                 "); write the merged file to a new path"));
  }
}

// Refuses rows, recorded sites and bfa paths that do not fit the job's grid and models: each
// row's axis indices must be those of its trial id, each site or flip inside a tensor of its
// trial's model. The reader checked what it can without the job (ids in [0, n_trials),
// ascending; tensors well formed).
void check_fits_grid(const StoredResults& shard, const JobConfig& job, const Grid& grid) {
  bool same_models = shard.models.size() == job.models.size();
  for (size_t m = 0; same_models && m < job.models.size(); ++m) {
    same_models = shard.models[m].name == job.models[m].name;
  }
  check_input(same_models,
              in_file(shard.source_path, "/grid/model does not list the models of its job_text"));
  for (const TrialRow& row : shard.rows) {
    const TrialSpec& spec = grid.trial(row.trial);
    check_input(spec.model_idx == row.model_idx && spec.strategy_idx == row.strategy_idx &&
                    spec.amount_idx == row.amount_idx && spec.seed_idx == row.seed_idx,
                in_file(shard.source_path,
                        "/trials: trial " + std::to_string(row.trial) +
                            " has other axis indices than its job's grid gives it (model " +
                            std::to_string(row.model_idx) + ", strategy " +
                            std::to_string(row.strategy_idx) + ", amount " +
                            std::to_string(row.amount_idx) + ", seed " +
                            std::to_string(row.seed_idx) + ")"));
  }
  // Per model: its tensors' [offset, offset + count) ranges sorted by offset.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> ranges(shard.models.size());
  for (size_t m = 0; m < shard.models.size(); ++m) {
    for (const TensorInfo& tensor : shard.models[m].tensors) {
      ranges[m].emplace_back(tensor.offset, tensor.offset + tensor.count);
    }
    std::sort(ranges[m].begin(), ranges[m].end());
  }
  const auto check_offset = [&](int64_t trial, int64_t offset, const char* group) {
    const auto model = static_cast<size_t>(grid.trial(trial).model_idx);
    const auto& model_ranges = ranges[model];
    const auto after = std::upper_bound(model_ranges.begin(), model_ranges.end(),
                                        std::make_pair(offset, INT64_MAX));
    check_input(after != model_ranges.begin() && offset < std::prev(after)->second,
                in_file(shard.source_path, std::string(group) + ": trial " + std::to_string(trial) +
                                               " changes parameter " + std::to_string(offset) +
                                               ", which is in no tensor of its model (/tensors)"));
  };
  for (const TrialSites& recorded : shard.sites) {
    for (const SiteRecord& site : recorded.sites)
      check_offset(recorded.trial, site.offset, "/sites");
  }
  for (const TrialPath& path : shard.paths) {
    for (const PathStep& step : path.steps) check_offset(path.trial, step.offset, "/paths");
  }
}

std::string shard_label(const Provenance& p) {
  return std::to_string(p.shard_index) + "/" + std::to_string(p.shard_count);
}

// Refuses shards of different jobs or grids, overlapping shards, trials outside their shard,
// and (unless `allow_partial`) missing or incomplete shards.
void check_shards(const std::vector<StoredResults>& shards, bool allow_partial) {
  const StoredResults& first = shards.front();
  const int64_t count = first.provenance.shard_count;
  std::map<int64_t, std::string> seen;  // shard index -> file
  for (const StoredResults& shard : shards) {
    const Provenance& p = shard.provenance;
    check_input(p.job_sha256 == first.provenance.job_sha256,
                in_file(shard.source_path, "is from a different job (job_sha256 " + p.job_sha256 +
                                               ") than " + first.source_path + " (" +
                                               first.provenance.job_sha256 + ")"));
    check_input(
        p.shard_count == count && shard.n_trials == first.n_trials,
        in_file(shard.source_path,
                "is shard " + shard_label(p) + " of " + std::to_string(shard.n_trials) +
                    " trials, but " + first.source_path + " is shard " +
                    shard_label(first.provenance) + " of " + std::to_string(first.n_trials)));
    // Shards of one job drawn by different site recipes (an engine upgrade between shards)
    // hold different sites for the same trial ids: no merge can be one run of the grid.
    check_input(
        p.site_recipe == first.provenance.site_recipe,
        in_file(shard.source_path, "drew its sites by recipe " + p.site_recipe +
                                       " (root attribute "
                                       "site_recipe), but " +
                                       first.source_path + " by " + first.provenance.site_recipe +
                                       "; rerun the older shards with one engine version"));
    const auto [previous, inserted] = seen.emplace(p.shard_index, shard.source_path);
    check_input(inserted, in_file(shard.source_path, "overlaps " + previous->second +
                                                         ": both are shard " + shard_label(p)));
    const TrialRange range = shard_range(shard.n_trials, p.shard_index, p.shard_count);
    for (const TrialRow& row : shard.rows) {
      check_input(row.trial >= range.first && row.trial < range.last,
                  in_file(shard.source_path, "holds trial " + std::to_string(row.trial) +
                                                 " outside its shard " + shard_label(p)));
    }
    for (const TrialSites& recorded : shard.sites) {
      check_input(
          recorded.trial >= range.first && recorded.trial < range.last,
          in_file(shard.source_path, "/sites: holds trial " + std::to_string(recorded.trial) +
                                         " outside its shard " + shard_label(p)));
    }
    for (const TrialPath& path : shard.paths) {
      check_input(path.trial >= range.first && path.trial < range.last,
                  in_file(shard.source_path, "/paths: holds trial " + std::to_string(path.trial) +
                                                 " outside its shard " + shard_label(p)));
    }
    const int64_t expected = range.last - range.first;
    check_input(allow_partial || static_cast<int64_t>(shard.rows.size()) == expected,
                in_file(shard.source_path,
                        "shard " + shard_label(p) + " is incomplete (" +
                            std::to_string(shard.rows.size()) + " of " + std::to_string(expected) +
                            " trials); resume it with fracsweep run, or use --allow-partial"));
  }
  std::string missing;
  for (int64_t index = 0; index < count; ++index) {
    if (seen.count(index) == 0) missing += (missing.empty() ? "" : ", ") + std::to_string(index);
  }
  check_input(allow_partial || missing.empty(), "fracsweep merge: missing shard(s) " + missing +
                                                    " of " + std::to_string(count) +
                                                    "; use --allow-partial to merge without them");
}

ResultsContent merged_content(std::vector<StoredResults>& shards, const JobConfig& job,
                              const Grid& grid, const std::string& command_line) {
  ResultsContent content;
  content.job = &job;
  content.grid = &grid;
  content.models = shards.front().models;
  content.probe_kinds = shards.front().probe_kinds;
  Provenance& merged = content.provenance;
  merged = shards.front().provenance;
  merged.command_line = command_line;
  merged.shard_index = 0;
  merged.shard_count = 1;
  merged.resume_count = 0;
  merged.hostnames.clear();
  merged.sessions.clear();
  for (StoredResults& shard : shards) {
    const Provenance& p = shard.provenance;
    merged.mpi_size = std::max(merged.mpi_size, p.mpi_size);
    merged.hostnames.insert(merged.hostnames.end(), p.hostnames.begin(), p.hostnames.end());
    merged.started_utc = std::min(merged.started_utc, p.started_utc);
    merged.finished_utc = std::max(merged.finished_utc, p.finished_utc);
    merged.resume_count += p.resume_count;
    for (const std::string& session : p.sessions) {
      merged.sessions.push_back("shard " + shard_label(p) + ": " + session);
    }
    content.rows.insert(content.rows.end(), shard.rows.begin(), shard.rows.end());
    for (TrialSites& sites : shard.sites) content.sites.push_back(std::move(sites));
    for (TrialPath& path : shard.paths) content.paths.push_back(std::move(path));
  }
  std::sort(content.rows.begin(), content.rows.end(),
            [](const TrialRow& a, const TrialRow& b) { return a.trial < b.trial; });
  std::sort(content.sites.begin(), content.sites.end(),
            [](const TrialSites& a, const TrialSites& b) { return a.trial < b.trial; });
  std::sort(content.paths.begin(), content.paths.end(),
            [](const TrialPath& a, const TrialPath& b) { return a.trial < b.trial; });
  return content;
}

// Baselines are deterministic: shards that disagree ran on different models or data.
void check_same_baselines(const std::vector<StoredResults>& shards) {
  const StoredResults& first = shards.front();
  for (const StoredResults& shard : shards) {
    bool same = shard.models.size() == first.models.size();
    for (size_t m = 0; same && m < first.models.size(); ++m) {
      const Baseline& a = first.models[m].baseline;
      const Baseline& b = shard.models[m].baseline;
      same = a.greedy_ids == b.greedy_ids && a.metrics.positions == b.metrics.positions &&
             std::memcmp(&a.metrics.mean_nll, &b.metrics.mean_nll, sizeof(double)) == 0 &&
             first.models[m].n_parameters == shard.models[m].n_parameters;
    }
    check_input(same, in_file(shard.source_path, "its unperturbed baseline differs from " +
                                                     first.source_path +
                                                     "'s: the shards ran on different models or "
                                                     "evaluation data"));
  }
}

}  // namespace

int command_merge(const std::vector<std::string>& args, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  po::options_description options("options");
  options.add_options()("help,h", "show this help")("out,o", po::value<std::string>(),
                                                    "merged results file (required)")(
      "no-file-locking",
      "do not lock HDF5 files (file systems without locking: Lustre, NFS); "
      "the same as HDF5_USE_FILE_LOCKING=FALSE in the environment")(
      "force", "overwrite an existing merged file")(
      "allow-partial",
      "merge even when shards are missing or incomplete (the file then lists "
      "the missing trials like any partial file)");
  bool help = false;
  run_collective_phase(comm, [&] {
    const auto vm = parse_command_line(
        "merge", args, options, {"shards"},
        "usage: fracsweep merge --out MERGED.h5 SHARD.h5 [SHARD.h5 ...] [options]\n\n"
        "Combines the files of `fracsweep run --shard I/N` (one job) into one file equal to a\n"
        "single run. Refuses files of different jobs, overlapping shards, and missing or\n"
        "incomplete shards unless --allow-partial.",
        help, rank, /*last_repeats=*/true);
    if (help || rank != 0) return;
    check_input(vm.count("out") > 0,
                "fracsweep merge: --out is required (see fracsweep merge --help)");
    const std::string out = vm["out"].as<std::string>();
    const bool force = vm.count("force") > 0;
    if (vm.count("no-file-locking")) ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    check_output_path(out, force);
    std::string command_line = "fracsweep merge";
    for (const std::string& arg : args) command_line += " " + arg;

    const auto& inputs = vm["shards"].as<std::vector<std::string>>();
    check_merge_paths(inputs, out);
    std::vector<StoredResults> shards;
    for (const std::string& path : inputs) shards.push_back(read_results(path));
    // An adaptive run is never sharded (run refuses --shard), and its /adaptive table is the
    // searches' state, which rows from several files cannot rebuild: nothing to merge.
    for (const StoredResults& shard : shards) {
      check_input(!parse_job_text(shard.job_text, shard.job_path).adaptive,
                  in_file(shard.source_path,
                          "holds an adaptive search ([sweep] adaptive), which runs whole and is "
                          "never sharded: there is nothing to merge; use the file itself"));
    }
    check_shards(shards, vm.count("allow-partial") > 0);
    std::sort(shards.begin(), shards.end(), [](const StoredResults& a, const StoredResults& b) {
      return a.provenance.shard_index < b.provenance.shard_index;
    });
    check_same_baselines(shards);
    const StoredResults& first = shards.front();
    const JobConfig job = parse_job_text(first.job_text, first.job_path);
    const Grid grid = job_grid(job);
    check_input(
        grid.size() == first.n_trials,
        in_file(first.source_path, "its job text gives a grid of " + std::to_string(grid.size()) +
                                       " trials, not " + std::to_string(first.n_trials)));
    for (const StoredResults& shard : shards) check_fits_grid(shard, job, grid);
    const ResultsContent content = merged_content(shards, job, grid, command_line);
    write_results(out, content, force);
    std::fprintf(stderr, "[fracsweep] merged %zu shard file(s) into %s: %zu of %lld trials\n",
                 shards.size(), out.c_str(), content.rows.size(),
                 static_cast<long long>(grid.size()));
  });
  return exit_ok;
}

}  // namespace fracsweep
