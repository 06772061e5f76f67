#include "job_reader.hpp"

#include <cstdlib>
#include <fstream>

#include "fracsweep/util/text.hpp"

namespace fracsweep::job_file {

namespace fs = std::filesystem;

JobReader::JobReader(std::string job_path, po::variables_map values)
    : job_path_(std::move(job_path)), values_(std::move(values)) {
  std::error_code error;
  const fs::path absolute = fs::absolute(fs::path(job_path_), error);
  job_dir_ = (error ? fs::path(job_path_) : absolute).parent_path();
}

std::vector<std::string> JobReader::list(const char* key, const std::string& expected) const {
  std::optional<std::string> text = optional_text(key);
  if (!text) return {};
  std::vector<std::string> tokens = split_whitespace(*text);
  if (tokens.empty()) fail(key, "empty; expected " + expected);
  return tokens;
}

int64_t JobReader::integer_at_least(const char* key, int64_t fallback, int64_t minimum) const {
  std::optional<std::string> text = optional_text(key);
  if (!text) return fallback;
  const std::string expectation = "an integer >= " + std::to_string(minimum);
  const int64_t value = number<int64_t>(key, trimmed_single(key, *text, expectation), expectation);
  if (value < minimum) fail(key, "expected " + expectation + ", found " + std::to_string(value));
  return value;
}

std::string JobReader::trimmed_single(const char* key, const std::string& text,
                                      const std::string& expected) const {
  std::vector<std::string> tokens = split_whitespace(text);
  if (tokens.size() != 1) fail(key, "expected one value (" + expected + "), found '" + text + "'");
  return tokens.front();
}

double JobReader::fraction(const std::string& key, const std::string& token) const {
  const double value = number<double>(key, token, "a fraction in (0, 1]");
  if (!(value > 0.0 && value <= 1.0)) {
    fail(key, "fraction '" + token + "' is outside (0, 1]");
  }
  return value;
}

std::string JobReader::resolve_path(const std::string& key, const std::string& what,
                                    const std::string& written) const {
  std::string expanded;
  size_t pos = 0;
  while (pos < written.size()) {
    const size_t open = written.find("${", pos);
    if (open == std::string::npos) {
      expanded += written.substr(pos);
      break;
    }
    const size_t close = written.find('}', open + 2);
    if (close == std::string::npos) {
      fail(key, what + " '" + written + "' has '${' without a closing '}'");
    }
    const std::string variable = written.substr(open + 2, close - open - 2);
    const char* value = variable.empty() ? nullptr : std::getenv(variable.c_str());
    if (value == nullptr) {
      fail(key, what + " '" + written + "' uses environment variable '" + variable +
                    "', which is not set");
    }
    expanded += written.substr(pos, open - pos) + value;
    pos = close + 1;
  }
  if (expanded.empty()) fail(key, what + " is empty");
  fs::path path(expanded);
  if (path.is_relative()) path = job_dir_ / path;
  return path.lexically_normal().string();
}

void JobReader::check_readable_file(const std::string& key, const std::string& what,
                                    const std::string& path) const {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) fail(key, what + " '" + path + "' does not exist");
  if (!fs::is_regular_file(status)) fail(key, what + " '" + path + "' is not a regular file");
  if (!std::ifstream(path, std::ios::binary)) fail(key, what + " '" + path + "' cannot be read");
}

}  // namespace fracsweep::job_file
