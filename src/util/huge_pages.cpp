#include "fracsweep/util/huge_pages.hpp"

#include <sys/mman.h>

namespace fracsweep {

HugePageSpan huge_page_span(uintptr_t begin, size_t bytes) {
  constexpr uintptr_t huge_page = uintptr_t{1} << 21;
  const uintptr_t first = (begin + huge_page - 1) & ~(huge_page - 1);
  const uintptr_t last = (begin + bytes) & ~(huge_page - 1);
  if (last <= first) return {};
  return {first, static_cast<size_t>(last - first)};
}

size_t advise_huge_pages(const void* data, size_t bytes) {
  const HugePageSpan span = huge_page_span(reinterpret_cast<uintptr_t>(data), bytes);
  if (span.bytes == 0) return 0;
  // NOLINTNEXTLINE(performance-no-int-to-ptr): madvise takes the span's address
  const bool advised =
      ::madvise(reinterpret_cast<void*>(span.first), span.bytes, MADV_HUGEPAGE) == 0;
  return advised ? span.bytes : 0;
}

}  // namespace fracsweep
