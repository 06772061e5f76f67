#pragma once
// Transparent huge pages for large anonymous buffers that are about to be filled: one page
// fault per 2 MB instead of per 4 KB (each fault costs microseconds in a VM), and fewer TLB
// misses after. Advice only: the kernel may decline (THP "never", no free huge page), and the
// buffer's contents are the same either way.
#include <cstddef>
#include <cstdint>

namespace fracsweep {

// The whole 2 MB pages inside [begin, begin + bytes): [first, first + bytes), bytes == 0 when
// none fits.
struct HugePageSpan {
  uintptr_t first = 0;
  size_t bytes = 0;
};
HugePageSpan huge_page_span(uintptr_t begin, size_t bytes);

// madvise(MADV_HUGEPAGE) over huge_page_span(data, bytes), before the buffer is first written.
// Returns the bytes advised (0: too small, or the kernel refused the advice).
size_t advise_huge_pages(const void* data, size_t bytes);

}  // namespace fracsweep
