#pragma once
// The HDF5 results file (schema "fracsweep-results/1"; layout documented in README.md).
// Written by one rank, under a temporary name, renamed into place when complete.
#include <cstdint>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/grid/adaptive.hpp"
#include "fracsweep/grid/grid.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/perturb/rng.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

constexpr const char* results_schema_version = "fracsweep-results/1";

struct Provenance {
  std::string software_version, git_commit, command_line;
  std::string job_sha256;
  std::string schedule;  // "dynamic (chunk N)" or "static"
  int mpi_size = 1;
  std::vector<std::string> hostnames;  // distinct, sorted
  std::string blis_version, blis_kernels, blis_kernels_selected_by;
  int blis_threads = 1;
  std::string started_utc, finished_utc;  // ISO 8601, "2026-11-26T05:03:13Z"
  int64_t shard_index = 0;  // the file holds shard shard_index (0-based) of shard_count
  int64_t shard_count = 1;
  int32_t resume_count = 0;  // resumes of an interrupted run (summed over merged shards)
  // One line per start of `fracsweep run` that wrote trials to this output, oldest first:
  // "STARTED_UTC job=JOB_ID host=HOST trials_before=N"; more than one line means resumes.
  std::vector<std::string> sessions;
  // How random sites were drawn (root attribute site_recipe): this engine's recipe, or the
  // file's when read back ("fisher-yates" for files written before the attribute existed).
  std::string site_recipe = site_recipe_name;
};

struct TrialSites {
  int64_t trial = 0;
  std::vector<SiteRecord> sites;  // site rank order
};

// The path of one bfa trial (its flips in order and the state after each).
struct TrialPath {
  int64_t trial = 0;
  std::vector<PathStep> steps;
};

struct ResultsContent {
  const JobConfig* job = nullptr;
  const Grid* grid = nullptr;
  std::vector<ModelSummary> models;      // (n_models) job order
  std::vector<TrialRow> rows;            // completed trials, ascending trial id
  std::vector<TrialSites> sites;         // recorded trials, ascending trial id
  std::vector<TrialPath> paths;          // bfa trials, ascending trial id
  std::vector<std::string> probe_kinds;  // [eval] probes kinds in file order (empty: none)
  std::vector<SearchResult> searches;    // adaptive jobs: every search (grid/adaptive.hpp)
  Provenance provenance;
};

// Refuses (InputError, nothing written) when `path` exists and !force, or its directory is
// not writable. Called before any work so a bad --out fails fast.
void check_output_path(const std::string& path, bool force);

// Writes the complete file to "<path>.tmp-<pid>", then renames it to `path`.
void write_results(const std::string& path, const ResultsContent& content, bool force);

// A results file read back (`fracsweep merge`): everything write_results needs but the job and
// grid, which the caller rebuilds from job_text.
struct StoredResults {
  std::string source_path;
  std::string job_name, job_path, job_text;
  int64_t n_trials = 0;                  // grid size
  std::vector<ModelSummary> models;      // (n_models) baselines, tensors; no per-tensor statistics
  std::vector<TrialRow> rows;            // ascending trial id
  std::vector<TrialSites> sites;         // ascending trial id
  std::vector<TrialPath> paths;          // ascending trial id
  std::vector<std::string> probe_kinds;  // /grid/probe_kind (empty: no probes)
  Provenance provenance;                 // sessions split into lines
};

// Throws InputError naming the file and the object when `path` is unreadable or not a
// fracsweep-results/1 file.
StoredResults read_results(const std::string& path);

}  // namespace fracsweep
