#define BOOST_TEST_MODULE image_data
// Classifier evaluation data: IDX files written here byte by byte, plain and gzip (a gzip
// member with stored deflate blocks and a CRC-32 computed here, so the reader's zlib path is
// checked against bytes built independently), read back exactly for every IDX type; bad magic,
// types, dimensions, sizes and gzip streams rejected with the file named; shapes checked
// against a model input; scaling against hand-computed values; the real MNIST files in
// ../shared against values known from the dataset.
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "fracsweep/formats/image_data.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;

namespace {

using fracsweep::test::TempDir;

void put_be(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

// IDX: 0 0 type ndim, big-endian uint32 dimensions, then `data` (already big-endian).
std::string idx_bytes(unsigned char type, const std::vector<uint32_t>& dims,
                      const std::string& data) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) put_be(out, d, 4);
  return out + data;
}

uint32_t crc32(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// RFC 1952 member: header, deflate stored blocks (RFC 1951 BTYPE 00), CRC-32, size.
std::string gzip_stored(const std::string& payload) {
  std::string out = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 0, '\xff'};
  size_t pos = 0;
  do {
    const size_t length = std::min<size_t>(payload.size() - pos, 65535);
    const bool final = pos + length == payload.size();
    out += static_cast<char>(final ? 1 : 0);
    put_le(out, length, 2);
    put_le(out, ~length & 0xFFFF, 2);
    out += payload.substr(pos, length);
    pos += length;
  } while (pos < payload.size());
  put_le(out, crc32(payload), 4);
  put_le(out, payload.size() & 0xFFFFFFFFu, 4);
  return out;
}

std::string write(const TempDir& dir, const std::string& bytes, const std::string& name) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

template <typename Action>
void expect_input_error(Action action, std::initializer_list<std::string> fragments) {
  try {
    action();
    BOOST_ERROR("accepted");
  } catch (const fs::InputError& error) {
    const std::string message = error.what();
    for (const std::string& fragment : fragments) {
      BOOST_TEST(contains(message, fragment), "'" << fragment << "' not in: " << message);
    }
  }
}

void expect_rejected(const std::string& path, std::initializer_list<std::string> fragments) {
  BOOST_TEST_CONTEXT(path) {
    expect_input_error([&] { fs::read_example_array(path); }, fragments);
    expect_input_error([&] { fs::read_example_array(path); }, {path});
  }
}

fs::ExampleArray array_of(std::vector<int64_t> shape, bool integral = false) {
  fs::ExampleArray array;
  array.path = "data.npy";
  array.dtype = integral ? "npy:<i8" : "npy:<f4";
  array.integral = integral;
  array.shape = std::move(shape);
  return array;
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_every_idx_type_plain_and_gzip) {
  const TempDir dir;
  // u8 images (3, 2, 2) = 0..11 * 20
  std::string pixels;
  for (int i = 0; i < 12; ++i) pixels += static_cast<char>(i * 20);
  const std::string images = idx_bytes(0x08, {3, 2, 2}, pixels);
  for (const bool gzip : {false, true}) {
    const fs::ExampleArray a = fs::read_example_array(
        write(dir, gzip ? gzip_stored(images) : images, gzip ? "a.gz" : "a.idx"));
    BOOST_TEST(a.shape == (std::vector<int64_t>{3, 2, 2}), boost::test_tools::per_element());
    BOOST_TEST(a.integral);
    BOOST_TEST(a.dtype == "idx:u8");
    for (int i = 0; i < 12; ++i)
      BOOST_TEST(a.values[static_cast<size_t>(i)] == static_cast<float>(i * 20));
  }
  // A payload over several stored blocks.
  const std::string many(70000 * 2, '\x05');
  const fs::ExampleArray big =
      fs::read_example_array(write(dir, gzip_stored(idx_bytes(0x08, {70000, 2}, many)), "big.gz"));
  BOOST_TEST(big.values.size() == 140000u);
  BOOST_TEST(big.values.back() == 5.0f);

  std::string data;
  put_be(data, 0xFFFE, 2);  // i16 -2
  put_be(data, 0x7FFF, 2);  // i16 32767
  BOOST_TEST(fs::read_example_array(write(dir, idx_bytes(0x0B, {2}, data), "s.idx")).values ==
                 (std::vector<float>{-2, 32767}),
             boost::test_tools::per_element());
  data.clear();
  put_be(data, 0x80, 1);  // i8 -128
  BOOST_TEST(fs::read_example_array(write(dir, idx_bytes(0x09, {1}, data), "b.idx")).values[0] ==
             -128.0f);
  data.clear();
  put_be(data, 0xFFFFFFF9u, 4);  // i32 -7
  BOOST_TEST(fs::read_example_array(write(dir, idx_bytes(0x0C, {1}, data), "i.idx")).values[0] ==
             -7.0f);
  data.clear();
  put_be(data, std::bit_cast<uint32_t>(-1.5f), 4);
  put_be(data, std::bit_cast<uint64_t>(0.25), 8);
  const fs::ExampleArray f32 =
      fs::read_example_array(write(dir, idx_bytes(0x0D, {1}, data.substr(0, 4)), "f.idx"));
  BOOST_TEST(f32.values[0] == -1.5f);
  BOOST_TEST(!f32.integral);
  BOOST_TEST(
      fs::read_example_array(write(dir, idx_bytes(0x0E, {1}, data.substr(4)), "d.idx")).values[0] ==
      0.25f);

  const fs::ExampleArray header = fs::read_example_array(dir.file("a.gz"), true);
  BOOST_TEST(header.shape == (std::vector<int64_t>{3, 2, 2}), boost::test_tools::per_element());
  BOOST_TEST(header.values.empty());
}

BOOST_AUTO_TEST_CASE(bad_idx_files_are_rejected) {
  const TempDir dir;
  const std::string good = idx_bytes(0x08, {2, 3}, std::string(6, '\x01'));
  expect_rejected(write(dir, "\x01\x02\x03\x04 no idx", "magic.idx"), {"not an IDX file", "magic"});
  expect_rejected(write(dir, idx_bytes(0x07, {2, 3}, std::string(6, '\x01')), "type.idx"),
                  {"not an IDX file"});
  expect_rejected(write(dir, idx_bytes(0x08, {}, ""), "nodims.idx"), {"not an IDX file"});
  expect_rejected(write(dir, idx_bytes(0x08, {2, 0}, ""), "zero.idx"), {"dimension 1 is 0"});
  expect_rejected(write(dir, good.substr(0, good.size() - 1), "short.idx"),
                  {"file ends inside the data", "2x3 of u8"});
  expect_rejected(write(dir, good + "x", "long.idx"), {"bytes follow the data"});
  expect_rejected(write(dir, good.substr(0, 6), "header.idx"),
                  {"file ends inside the IDX dimensions"});
  expect_rejected(write(dir, idx_bytes(0x0E, {65536, 65536, 65536}, ""), "huge.idx"),
                  {"larger than 4 GiB"});
  std::string bad_crc = gzip_stored(good);
  bad_crc[bad_crc.size() - 6] ^= 1;
  expect_rejected(write(dir, bad_crc, "crc.gz"), {"corrupt or truncated gzip"});
  const std::string compressed = gzip_stored(good);
  expect_rejected(write(dir, compressed.substr(0, compressed.size() - 8), "cut.gz"), {"gzip"});
  BOOST_CHECK_THROW(fs::read_example_array(dir.file("absent.idx")), fs::InputError);
}

BOOST_AUTO_TEST_CASE(shapes_are_checked_against_the_model_input) {
  const std::vector<int64_t> image = {1, 8, 8};
  const fs::InputScaling none;
  const auto labels = array_of({10}, true);
  BOOST_TEST(fs::check_eval_arrays(array_of({10, 1, 8, 8}), labels, image, 0, none, "") == 10);
  BOOST_TEST(fs::check_eval_arrays(array_of({10, 8, 8}), labels, image, 4, none, "") ==
             4);  // channel 1 implied
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 64}), labels, image, 0, none, "model 'm': ");
      },
      {"model 'm': ", "data.npy", "examples have shape 64", "1x8x8"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 3, 8, 8}), labels, {3, 8, 9}, 0, none, "");
      },
      {"3x8x8", "3x8x9"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({10}), image, 0, none, "");
      },
      {"labels must be integers"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({9}, true), image, 0, none, "");
      },
      {"9 labels for 10 examples"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({11}, true), image, 0, none, "");
      },
      {"11 labels for 10 examples"});
  // With a limit, the labels need only cover the evaluated examples.
  BOOST_TEST(
      fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({6}, true), image, 6, none, "") == 6);
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({5}, true), image, 6, none, "");
      },
      {"5 labels for 6 examples"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), array_of({10, 1}, true), image, 0, none, "");
      },
      {"labels must be 1-D"});
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), labels, image, 11, none, "");
      },
      {"examples = 11", "holds 10 examples"});
  fs::InputScaling two_channels;
  two_channels.mean = {0.5, 0.5};
  two_channels.std = {1, 1};
  expect_input_error(
      [&] {
        fs::check_eval_arrays(array_of({10, 1, 8, 8}), labels, image, 0, two_channels, "");
      },
      {"list 2 channels", "has 1"});

  fs::ExampleArray ids = array_of({3}, true);
  ids.values = {0, 9, 10};
  BOOST_TEST(fs::class_labels(ids, 2, 10, "") == (std::vector<int32_t>{0, 9}),
             boost::test_tools::per_element());
  expect_input_error([&] { fs::class_labels(ids, 3, 10, ""); }, {"label 2 is 10", "0..9"});
}

BOOST_AUTO_TEST_CASE(scaling_matches_hand_computed_values) {
  // Two examples of (2, 1, 2): x / 255, then channel 0: (x - 0.5) / 0.5, channel 1: (x - 0.25) / 2.
  std::vector<float> values = {0, 255, 51, 102, 255, 0, 0, 127.5f};
  fs::InputScaling scaling;
  scaling.divisor = 255;
  scaling.mean = {0.5, 0.25};
  scaling.std = {0.5, 2};
  fs::scale_inputs(values.data(), 2, {2, 1, 2}, scaling);
  const std::vector<float> expected = {-1, 1, -0.025f, 0.075f, 1, -1, -0.125f, 0.125f};
  for (size_t i = 0; i < values.size(); ++i)
    BOOST_TEST(values[i] == expected[i], boost::test_tools::tolerance(1e-6f));

  std::vector<float> single = {16, 8};
  fs::InputScaling divisor_only;
  divisor_only.divisor = 16;
  fs::scale_inputs(single.data(), 1, {2}, divisor_only);
  BOOST_TEST(single == (std::vector<float>{1, 0.5f}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(reads_the_real_mnist_files,
                     *boost::unit_test::precondition(fs::test::needs_shared())) {
  const fs::ExampleArray labels =
      fs::read_example_array(fs::test::shared_file("data/mnist/t10k-labels-idx1-ubyte.gz"));
  BOOST_TEST(labels.shape == (std::vector<int64_t>{10000}), boost::test_tools::per_element());
  const std::vector<float> first(labels.values.begin(), labels.values.begin() + 10);
  BOOST_TEST(first == (std::vector<float>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9}),
             boost::test_tools::per_element());
  const fs::ExampleArray images =
      fs::read_example_array(fs::test::shared_file("data/mnist/t10k-images-idx3-ubyte.gz"));
  BOOST_TEST(images.shape == (std::vector<int64_t>{10000, 28, 28}),
             boost::test_tools::per_element());
  // Pixel sums of the first and last image, and a row of the first (computed with Python's gzip).
  double first_sum = 0, last_sum = 0;
  for (size_t i = 0; i < 784; ++i) {
    first_sum += images.values[i];
    last_sum += images.values[9999 * 784 + i];
  }
  BOOST_TEST(first_sum == 18454.0);
  BOOST_TEST(last_sum == 41833.0);
  const std::vector<float> row(images.values.begin() + 7 * 28 + 6,
                               images.values.begin() + 7 * 28 + 12);
  BOOST_TEST(row == (std::vector<float>{84, 185, 159, 151, 60, 36}),
             boost::test_tools::per_element());
}
