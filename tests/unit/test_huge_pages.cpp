#define BOOST_TEST_MODULE huge_pages
// Transparent huge page advice: the span of whole 2 MB pages inside a buffer, and that a large
// fresh buffer, advised and then written, is backed by huge pages where the kernel offers them.
#include <boost/test/unit_test.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "fracsweep/util/huge_pages.hpp"

using fracsweep::advise_huge_pages;
using fracsweep::huge_page_span;

namespace {

constexpr uintptr_t mb2 = uintptr_t{1} << 21;

// The kernel's transparent huge page mode: "always", "madvise", "never", or "" without THP.
std::string thp_mode() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string text;
  std::getline(file, text);
  const size_t open = text.find('['), close = text.find(']');
  return open == std::string::npos || close == std::string::npos
             ? ""
             : text.substr(open + 1, close - open - 1);
}

// AnonHugePages of this process, in KiB (/proc/self/smaps_rollup).
long anon_huge_kib() {
  std::ifstream file("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
  }
  return -1;
}

}  // namespace

BOOST_AUTO_TEST_CASE(span_is_the_whole_huge_pages_inside_the_buffer) {
  BOOST_TEST(huge_page_span(mb2, 2 * mb2).first == mb2);
  BOOST_TEST(huge_page_span(mb2, 2 * mb2).bytes == 2 * mb2);
  BOOST_TEST(huge_page_span(mb2 + 1, 2 * mb2).first == 2 * mb2);  // the first page is cut
  BOOST_TEST(huge_page_span(mb2 + 1, 2 * mb2).bytes == mb2);
  BOOST_TEST(huge_page_span(mb2 - 4096, mb2 + 4096).first == mb2);  // the page just fits
  BOOST_TEST(huge_page_span(mb2 - 4096, mb2 + 4096).bytes == mb2);
  BOOST_TEST(huge_page_span(mb2 - 4096, mb2 + 4095).bytes == 0u);  // one byte short
  BOOST_TEST(huge_page_span(mb2 + 4096, mb2).bytes == 0u);         // no whole page inside
  BOOST_TEST(huge_page_span(3 * mb2, 0).bytes == 0u);
}

BOOST_AUTO_TEST_CASE(an_advised_buffer_is_backed_by_huge_pages) {
  const std::string mode = thp_mode();
  constexpr size_t bytes = 64u << 20;
  const std::unique_ptr<char[]> buffer(new char[bytes]);  // (64 MiB) fresh, not yet written
  const size_t advised = advise_huge_pages(buffer.get(), bytes);
  if (mode.empty()) {  // a kernel without THP refuses the advice
    BOOST_TEST(advised == 0u);
    return;
  }
  BOOST_TEST(advised == huge_page_span(reinterpret_cast<uintptr_t>(buffer.get()), bytes).bytes);
  BOOST_TEST(advised >= bytes - 2 * mb2);
  const long before = anon_huge_kib();
  std::memset(buffer.get(), 1, bytes);
  const long after = anon_huge_kib();
  if (mode == "never") {
    BOOST_TEST_MESSAGE("transparent huge pages are off ([never]): no backing to check");
    return;
  }
  // At least half the advised span: the kernel may be short of free huge pages for some.
  BOOST_TEST(after - before >= static_cast<long>(advised / 1024 / 2),
             "AnonHugePages grew " << after - before << " KiB for " << advised / 1024
                                   << " KiB advised (THP mode " << mode << ")");
}
