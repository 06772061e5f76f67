# The fuzz targets (fuzz/fuzz_<name>.cpp) and the library each one needs; read by
# fuzz/CMakeLists.txt (libFuzzer builds) and tests/CMakeLists.txt (regression replays).
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
  "probes:fracsweep_formats")
