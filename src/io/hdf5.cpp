#include "hdf5.hpp"

namespace fracsweep {

QuietHdf5Errors::QuietHdf5Errors() {
  saved_ok_ = H5Eget_auto2(H5E_DEFAULT, &saved_handler_, &saved_data_) >= 0;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietHdf5Errors::~QuietHdf5Errors() {
  if (saved_ok_) H5Eset_auto2(H5E_DEFAULT, saved_handler_, saved_data_);
}

std::string innermost_hdf5_error() {
  std::string description;
  const H5E_walk2_t keep_innermost = [](unsigned n, const H5E_error2_t* error,
                                        void* out) -> herr_t {
    if (n == 0 && error->desc != nullptr) *static_cast<std::string*>(out) = error->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &description);
  H5Eclear2(H5E_DEFAULT);
  return description;
}

}  // namespace fracsweep
