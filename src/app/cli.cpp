#include <iostream>

#include "fracsweep/app/commands.hpp"
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

}  // namespace fracsweep
