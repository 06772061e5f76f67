#pragma once
// Build provenance compiled into the binary.
namespace fracsweep {
const char* software_version();  // e.g. "0.1.0"
const char* git_commit();        // full SHA, "-dirty" suffix for uncommitted trees, or "unknown"
}  // namespace fracsweep
