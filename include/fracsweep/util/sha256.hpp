#pragma once
// SHA-256 (FIPS 180-4) of a byte string, as lowercase hex: job files and model files are
// identified by it in the results' provenance.
#include <string>
#include <string_view>

namespace fracsweep {

std::string sha256_hex(std::string_view bytes);

}  // namespace fracsweep
