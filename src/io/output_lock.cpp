#include "fracsweep/io/output_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

std::string this_host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// Lock file text: "host=H pid=P job=J started=T\n".
std::string field(const std::string& text, const std::string& key) {
  const size_t start = text.find(key + "=");
  if (start == std::string::npos) return "";
  const size_t value = start + key.size() + 1;
  return text.substr(value, text.find_first_of(" \n", value) - value);
}

// A fracsweep process with this pid runs on this host (zombies and other programs do not count;
// a process whose command line cannot be read is assumed to be one).
bool fracsweep_alive(const std::string& pid_text) {
  if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  std::ifstream stat_file("/proc/" + pid_text + "/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) return false;  // no such process
  const size_t after_name = stat.rfind(')');
  const char state =
      after_name != std::string::npos && after_name + 2 < stat.size() ? stat[after_name + 2] : '?';
  if (state == 'Z' || state == 'X') return false;
  std::ifstream command_line("/proc/" + pid_text + "/cmdline");
  const std::string command((std::istreambuf_iterator<char>(command_line)),
                            std::istreambuf_iterator<char>());
  return command.empty() || command.find("fracsweep") != std::string::npos;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

OutputLock::OutputLock(const std::string& results_path, const std::string& job_id)
    : path_(path_for(results_path)) {
  const std::string host = this_host();
  char started[32];
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &parts);
  const std::string text = "host=" + host + " pid=" + std::to_string(::getpid()) +
                           " job=" + (job_id.empty() ? "-" : job_id) + " started=" + started + "\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const bool written =
          ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      ::close(fd);
      check_invariant(written, "cannot write the lock file " + path_);
      return;
    }
    check_input(errno == EEXIST, in_file(path_, std::string("cannot create the lock file: ") +
                                                    std::strerror(errno)));
    const std::string holder = read_text(path_);
    const bool stale = field(holder, "host") == host && !fracsweep_alive(field(holder, "pid"));
    check_input(
        stale && attempt == 0,
        in_file(path_, "another run is writing " + results_path + " (host " +
                           field(holder, "host") + ", pid " + field(holder, "pid") + ", job " +
                           field(holder, "job") + ", started " + field(holder, "started") +
                           "); if that run has ended, delete this lock file"));
    std::fprintf(stderr, "[fracsweep] %s: taking over the lock of a run that ended (pid %s)\n",
                 path_.c_str(), field(holder, "pid").c_str());
    std::filesystem::remove(path_);
  }
}

OutputLock::~OutputLock() {
  std::error_code ignored;
  std::filesystem::remove(path_, ignored);
}

}  // namespace fracsweep
