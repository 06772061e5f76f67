# Finds Debian's BLIS (no pkg-config file ships). Prefers the OpenMP build that
# scripts/install-deps.sh installs, then the pthread and serial builds, then the
# generic alternative. Never resolves to -lblas (which may be OpenBLAS).
#   BLIS::BLIS        imported target
#   BLIS_INCLUDE_DIR  directory of blis.h
#   BLIS_LIBRARY      path of libblis
set(_blis_variants blis-openmp blis-pthread blis-serial blis)
find_path(BLIS_INCLUDE_DIR blis.h
  PATH_SUFFIXES ${_blis_variants}
  PATHS /usr/include/x86_64-linux-gnu /usr/include /usr/local/include/blis /usr/local/include)
find_library(BLIS_LIBRARY NAMES blis
  PATH_SUFFIXES ${_blis_variants}
  PATHS /usr/lib/x86_64-linux-gnu /usr/lib /usr/local/lib)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BLIS REQUIRED_VARS BLIS_LIBRARY BLIS_INCLUDE_DIR)
if(BLIS_FOUND AND NOT TARGET BLIS::BLIS)
  add_library(BLIS::BLIS UNKNOWN IMPORTED)
  set_target_properties(BLIS::BLIS PROPERTIES
    IMPORTED_LOCATION "${BLIS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BLIS_INCLUDE_DIR}")
  message(STATUS "BLIS: ${BLIS_LIBRARY} (header ${BLIS_INCLUDE_DIR})")
endif()
