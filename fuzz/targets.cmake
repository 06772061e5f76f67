# The fuzz targets (fuzz/fuzz_<name>.cpp) and the library each one needs; read by
# fuzz/CMakeLists.txt (libFuzzer builds) and tests/CMakeLists.txt (regression replays).
# fuzz_results edits HDF5 files with the C API itself: it links the io layer and libhdf5.
if(NOT TARGET fracsweep_fuzz_results_libs)
  add_library(fracsweep_fuzz_results_libs INTERFACE)
  target_link_libraries(fracsweep_fuzz_results_libs INTERFACE fracsweep_io hdf5::hdf5)
endif()
set(FRACSWEEP_FUZZ_TARGETS
  "llama2c:fracsweep_formats"
  "tokenizer:fracsweep_formats"
  "gguf:fracsweep_models"
  "safetensors:fracsweep_formats"
  "json:fracsweep_formats"
  "sequential:fracsweep_nn"
  "npy:fracsweep_formats"
  "idx:fracsweep_formats"
  "hf_config:fracsweep_models"
  "job:fracsweep_config"
  "journal:fracsweep_io"
  "probes:fracsweep_formats"
  "results:fracsweep_fuzz_results_libs")
