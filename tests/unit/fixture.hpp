#pragma once
// The shared reference fixture (../shared/fixtures/stories260K/expected.json) flattened by
// Debian's python3 into "path=value" pairs, e.g. "baseline.mean_nll" or "greedy_from_bos.ids.3".
// Values computed by an independent reference implementation: the truth our tests compare to.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shared_data.hpp"

namespace fracsweep::test {

class Fixture {
 public:
  explicit Fixture(const std::string& relative = "fixtures/stories260K/expected.json") {
    const std::string json = shared_file(relative);
    const std::string command =
        "/usr/bin/python3 -c \"import json,sys\n"
        "def walk(p, v):\n"
        "    if isinstance(v, dict):\n"
        "        [walk(p + [k], x) for k, x in v.items()]\n"
        "    elif isinstance(v, list):\n"
        "        print('.'.join(p) + '#=' + str(len(v)))\n"
        "        [walk(p + [str(i)], x) for i, x in enumerate(v)]\n"
        "    else:\n"
        "        print('.'.join(p) + '=' + ('null' if v is None else repr(v) if isinstance(v, "
        "float) else str(v)))\n"
        "walk([], json.load(open(sys.argv[1])))\" '" +
        json + "'";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
    BOOST_TEST_REQUIRE(pipe != nullptr);
    char line[4096];
    while (std::fgets(line, sizeof line, pipe.get())) {
      std::string text(line);
      if (!text.empty() && text.back() == '\n') text.pop_back();
      const auto eq = text.find('=');
      if (eq != std::string::npos) values_[text.substr(0, eq)] = text.substr(eq + 1);
    }
    BOOST_TEST_REQUIRE(values_.size() > 100u, "could not flatten " << json);
  }

  const std::string& text(const std::string& path) const {
    const auto it = values_.find(path);
    BOOST_TEST_REQUIRE((it != values_.end()), "fixture has no " << path);
    return it->second;
  }
  double number(const std::string& path) const { return std::stod(text(path)); }
  std::vector<int32_t> ids(const std::string& path) const {
    std::vector<int32_t> out;
    const int n = std::stoi(text(path + "#"));
    for (int i = 0; i < n; ++i) out.push_back(std::stoi(text(path + "." + std::to_string(i))));
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace fracsweep::test
