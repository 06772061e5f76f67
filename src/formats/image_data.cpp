#include "fracsweep/formats/image_data.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <memory>

#include "fracsweep/formats/npy.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

constexpr int64_t max_idx_bytes = int64_t{1} << 32;  // decompressed data of one IDX file

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads IDX files through zlib, which passes plain files through unchanged.
class IdxReader {
 public:
  explicit IdxReader(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    check_input(file_ != nullptr, in_file(path, "cannot open the file"));
  }

  // Reads exactly `count` bytes; InputError naming `what` when the file ends first.
  void read(void* out, int64_t count, const std::string& what) {
    auto* cursor = static_cast<unsigned char*>(out);
    while (count > 0) {
      const auto chunk = static_cast<unsigned>(std::min<int64_t>(count, int64_t{1} << 30));
      const int got = gzread(file_.get(), cursor, chunk);
      check_zlib(got);
      check_input(got > 0, in_file(path_, "file ends inside " + what));
      cursor += got;
      count -= got;
    }
  }

  // After the data: nothing may follow, and a gzip stream must end cleanly (CRC checked).
  void expect_end() {
    unsigned char extra = 0;
    const int got = gzread(file_.get(), &extra, 1);
    check_zlib(got);
    check_input(got == 0, in_file(path_, "bytes follow the data the IDX header describes"));
  }

 private:
  void check_zlib(int got) {
    int code = Z_OK;
    const char* message = gzerror(file_.get(), &code);
    check_input(got >= 0 && code == Z_OK,
                in_file(path_, std::string("corrupt or truncated gzip data (") + message + ")"));
  }

  std::string path_;
  GzFile file_;
};

struct IdxType {
  unsigned char code;
  const char* name;
  int64_t size;
  bool integral;
};

constexpr IdxType idx_types[] = {{0x08, "u8", 1, true},   {0x09, "i8", 1, true},
                                 {0x0B, "i16", 2, true},  {0x0C, "i32", 4, true},
                                 {0x0D, "f32", 4, false}, {0x0E, "f64", 8, false}};

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

uint64_t big_endian(const unsigned char* p, int64_t size) {
  uint64_t value = 0;
  for (int64_t i = 0; i < size; ++i) value = (value << 8) | p[i];
  return value;
}

float idx_value(const unsigned char* p, const IdxType& type) {
  const uint64_t bits = big_endian(p, type.size);
  switch (type.code) {
    case 0x08:
      return static_cast<float>(bits);
    case 0x09:
      return static_cast<float>(static_cast<int8_t>(bits));
    case 0x0B:
      return static_cast<float>(static_cast<int16_t>(bits));
    case 0x0C:
      return static_cast<float>(static_cast<int32_t>(bits));
    case 0x0D:
      return std::bit_cast<float>(static_cast<uint32_t>(bits));
    default:
      return static_cast<float>(std::bit_cast<double>(bits));
  }
}

ExampleArray read_idx(const std::string& path, bool header_only) {
  IdxReader reader(path);
  unsigned char magic[4];
  reader.read(magic, 4, "the IDX magic");
  const IdxType* type = nullptr;
  for (const IdxType& candidate : idx_types) {
    if (candidate.code == magic[2]) type = &candidate;
  }
  check_input(magic[0] == 0 && magic[1] == 0 && type != nullptr && magic[3] >= 1 && magic[3] <= 8,
              in_file(path, "not an IDX file: magic bytes " + std::to_string(magic[0]) + " " +
                                std::to_string(magic[1]) + " " + std::to_string(magic[2]) + " " +
                                std::to_string(magic[3]) +
                                " (expected 0 0 type 1..8 dimensions, type one of "
                                "0x08 0x09 0x0B 0x0C 0x0D 0x0E), and not a .npy file"));
  ExampleArray array;
  array.path = path;
  array.dtype = std::string("idx:") + type->name;
  array.integral = type->integral;
  int64_t bytes = type->size;
  for (int d = 0; d < magic[3]; ++d) {
    unsigned char dim[4];
    reader.read(dim, 4, "the IDX dimensions");
    const int64_t size = big_endian_u32(dim);
    check_input(size >= 1, in_file(path, "IDX dimension " + std::to_string(d) + " is 0"));
    check_input(bytes <= max_idx_bytes / size, in_file(path, "IDX data larger than 4 GiB"));
    bytes *= size;
    array.shape.push_back(size);
  }
  // The buffer grows with the bytes that actually arrive, so a header that claims more than the
  // file holds fails at the file's end having allocated only what the file really (decompressed)
  // contains, never the declared size up front.
  const std::string data_what =
      "the data (the header says " + shape_text(array.shape) + " of " + type->name + ")";
  constexpr int64_t read_chunk = int64_t{1} << 20;
  std::vector<unsigned char> raw;  // (count * type size) big-endian
  while (static_cast<int64_t>(raw.size()) < bytes) {
    const auto filled = static_cast<int64_t>(raw.size());
    const int64_t next = std::min(read_chunk, bytes - filled);
    raw.resize(static_cast<size_t>(filled + next));
    reader.read(raw.data() + filled, next, data_what);
  }
  reader.expect_end();
  if (header_only) return array;
  const int64_t count = bytes / type->size;
  array.values.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    array.values[static_cast<size_t>(i)] = idx_value(raw.data() + i * type->size, *type);
  return array;
}

ExampleArray from_npy(const std::string& path, bool header_only) {
  const NpyArray npy = header_only ? read_npy_header(path) : read_npy(path);
  ExampleArray array;
  array.path = path;
  array.dtype = "npy:" + npy.dtype;
  array.integral = npy.dtype[1] != 'f';
  array.shape = npy.shape;
  if (!header_only) array.values = npy.as_float();
  return array;
}

int64_t product(const std::vector<int64_t>& shape, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < shape.size(); ++i) p *= shape[i];
  return p;
}

}  // namespace

ExampleArray read_example_array(const std::string& path, bool header_only) {
  std::ifstream file(path, std::ios::binary);
  check_input(static_cast<bool>(file), in_file(path, "cannot open the file"));
  char magic[6] = {};
  file.read(magic, 6);
  if (file.gcount() == 6 && std::memcmp(magic, "\x93NUMPY", 6) == 0)
    return from_npy(path, header_only);
  return read_idx(path, header_only);
}

int64_t check_eval_arrays(const ExampleArray& inputs, const ExampleArray& labels,
                          const std::vector<int64_t>& input_shape, int64_t limit,
                          const InputScaling& scaling, const std::string& context) {
  const std::vector<int64_t>& shape = inputs.shape;
  check_input(!shape.empty() && shape[0] >= 1,
              context + in_file(inputs.path, "expected (examples, ...) inputs, found shape " +
                                                 shape_text(shape)));
  const std::vector<int64_t> per_example(shape.begin() + 1, shape.end());
  const bool unit_channel = input_shape.size() == 3 && input_shape[0] == 1 &&
                            per_example == std::vector<int64_t>{input_shape[1], input_shape[2]};
  check_input(
      per_example == input_shape || unit_channel,
      context + in_file(inputs.path, "examples have shape " + shape_text(per_example) + " (array " +
                                         shape_text(shape) + "), the model's input is " +
                                         shape_text(input_shape)));
  check_input(labels.integral,
              context + in_file(labels.path, "labels must be integers, found " + labels.dtype));
  check_input(labels.shape.size() == 1,
              context + in_file(labels.path, "labels must be 1-D (examples), found shape " +
                                                 shape_text(labels.shape)));
  check_input(limit <= shape[0], context + "[eval] examples = " + std::to_string(limit) + " but " +
                                     inputs.path + " holds " + std::to_string(shape[0]) +
                                     " examples");
  // All examples need one label each; the first `limit` need at least `limit` labels.
  const int64_t evaluated = limit > 0 ? limit : shape[0];
  check_input(limit > 0 ? labels.shape[0] >= limit : labels.shape[0] == shape[0],
              context + in_file(labels.path,
                                std::to_string(labels.shape[0]) + " labels for " +
                                    std::to_string(evaluated) + " examples" +
                                    (limit > 0 ? " ([eval] examples)" : " in " + inputs.path)));
  const int64_t channels = input_shape[0];
  check_input(scaling.mean.empty() || scaling.mean.size() == 1 ||
                  static_cast<int64_t>(scaling.mean.size()) == channels,
              context + "[eval] input_mean/input_std list " + std::to_string(scaling.mean.size()) +
                  " channels, the model's input " + shape_text(input_shape) + " has " +
                  std::to_string(channels));
  return evaluated;
}

void scale_inputs(float* values, int64_t n, const std::vector<int64_t>& input_shape,
                  const InputScaling& scaling) {
  const int64_t channels = input_shape[0];
  const int64_t spatial = product(input_shape, 1);
  for (int64_t e = 0; e < n; ++e) {
    for (int64_t c = 0; c < channels; ++c) {
      double mean = 0, std = 1;
      if (!scaling.mean.empty()) {
        const size_t k = scaling.mean.size() == 1 ? 0 : static_cast<size_t>(c);
        mean = scaling.mean[k];
        std = scaling.std[k];
      }
      float* plane = values + (e * channels + c) * spatial;  // (spatial)
      for (int64_t i = 0; i < spatial; ++i) {
        plane[i] = static_cast<float>((plane[i] / scaling.divisor - mean) / std);
      }
    }
  }
}

std::vector<int32_t> class_labels(const ExampleArray& labels, int64_t n, int64_t classes,
                                  const std::string& context) {
  std::vector<int32_t> ids(static_cast<size_t>(n));  // (n)
  for (int64_t i = 0; i < n; ++i) {
    const float label = labels.values[static_cast<size_t>(i)];
    check_input(label >= 0 && label < static_cast<float>(classes),
                context + in_file(labels.path, "label " + std::to_string(i) + " is " +
                                                   std::to_string(static_cast<int64_t>(label)) +
                                                   ", outside the model's classes 0.." +
                                                   std::to_string(classes - 1)));
    ids[static_cast<size_t>(i)] = static_cast<int32_t>(label);
  }
  return ids;
}

}  // namespace fracsweep
