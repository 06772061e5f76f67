#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include "fracsweep/app/commands.hpp"
#include "fracsweep/nn/threads.hpp"
#include "fracsweep/util/error.hpp"

namespace po = boost::program_options;

namespace fracsweep {

po::variables_map parse_command_line(const std::string& command,
                                     const std::vector<std::string>& args,
                                     const po::options_description& options,
                                     const std::vector<std::string>& positional,
                                     const std::string& usage, bool& help, int rank,
                                     bool last_repeats) {
  po::options_description all;
  all.add(options);
  po::options_description hidden;
  po::positional_options_description order;
  for (size_t i = 0; i < positional.size(); ++i) {
    const std::string& name = positional[i];
    if (last_repeats && i + 1 == positional.size()) {
      hidden.add_options()(name.c_str(), po::value<std::vector<std::string>>());
      order.add(name.c_str(), -1);
    } else {
      hidden.add_options()(name.c_str(), po::value<std::string>());
      order.add(name.c_str(), 1);
    }
  }
  all.add(hidden);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(order).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError("fracsweep " + command + ": " + e.what() + " (see fracsweep " + command +
                     " --help)");
  }
  help = vm.count("help") > 0;
  if (help) {
    if (rank == 0) std::cout << usage << "\n" << options << std::flush;
    return vm;
  }
  for (const std::string& name : positional) {
    check_input(vm.count(name) > 0, "fracsweep " + command + ": missing argument " + name +
                                        " (see fracsweep " + command + " --help)");
  }
  return vm;
}

void add_threads_option(po::options_description& options) {
  options.add_options()(
      "threads", po::value<int>(),
      ("threads per rank, for BLIS and the OpenMP kernels alike (default: the cores of the "
       "rank's CPU affinity mask, " +
       std::to_string(affinity_cores()) +
       " here, divided among the ranks of the node that share them; mpirun binds each rank to "
       "one core unless --bind-to none or --map-by slot:PE=N, Slurm to --cpus-per-task); "
       "results do not depend on it")
          .c_str());
}

int threads_from(const po::variables_map& vm, const std::string& command, int default_threads) {
  if (!vm.count("threads")) return default_threads;
  const int threads = vm["threads"].as<int>();
  check_input(
      threads >= 1 && threads <= 256,
      "fracsweep " + command + ": --threads must be in 1..256, found " + std::to_string(threads));
  return threads;
}

namespace {

struct CommFree {
  void operator()(MPI_Comm* comm) const {
    MPI_Comm_free(comm);
    delete comm;
  }
};

}  // namespace

int default_threads_per_rank(MPI_Comm comm) {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (sched_getaffinity(0, sizeof(mine), &mine) != 0) CPU_SET(0, &mine);
  std::unique_ptr<MPI_Comm, CommFree> node(new MPI_Comm(MPI_COMM_NULL));
  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, node.get());
  int node_ranks = 1;
  MPI_Comm_size(*node, &node_ranks);
  std::vector<cpu_set_t> masks(static_cast<size_t>(node_ranks));  // (node_ranks) every mask
  MPI_Allgather(&mine, sizeof(cpu_set_t), MPI_BYTE, masks.data(), sizeof(cpu_set_t), MPI_BYTE,
                *node);
  int sharing = 0;  // ranks of this node that may run on one of this rank's cores, itself included
  for (cpu_set_t& other : masks) {
    cpu_set_t common;
    CPU_AND(&common, &mine, &other);
    sharing += CPU_COUNT(&common) > 0;
  }
  return std::max(1, CPU_COUNT(&mine) / std::max(1, sharing));
}

void warn_about_compute(const GemmInfo& gemm) {
  if (!gemm.warning.empty())
    std::fprintf(stderr, "[fracsweep] warning: %s\n", gemm.warning.c_str());
  const int cores = affinity_cores();
  if (gemm.threads > cores) {
    std::fprintf(stderr,
                 "[fracsweep] warning: %d threads per rank but rank 0 may run on %d core(s) (its "
                 "CPU affinity mask): threads will wait for each other; under mpirun add "
                 "--bind-to none or --map-by slot:PE=%d, under srun --cpus-per-task=%d, or "
                 "lower --threads\n",
                 gemm.threads, cores, gemm.threads, gemm.threads);
  }
}

}  // namespace fracsweep
