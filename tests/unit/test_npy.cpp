#define BOOST_TEST_MODULE npy
// .npy files written here byte by byte (magic, version, header length, header dict, data) and
// by numpy itself (Debian's python3), read back exactly; every malformed file rejected with an
// InputError naming the file and the field; conversions exact or refused.
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "fracsweep/formats/npy.hpp"
#include "fracsweep/util/error.hpp"
#include "temp_dir.hpp"

namespace fs = fracsweep;

namespace {

using fracsweep::test::TempDir;

template <typename T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// A .npy file: magic, version, little-endian header length (2 bytes in v1, 4 in v2/v3),
// the header padded with spaces to a multiple of 64 and ended by '\n', then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int version = 1) {
  const size_t prefix = version == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(version);
  bytes += '\0';
  const size_t length = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) bytes += static_cast<char>((length >> (8 * i)) & 0xFF);
  return bytes + header + data;
}

std::string dict(const std::string& descr, const std::string& shape,
                 const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

std::string write(const TempDir& dir, const std::string& bytes, const std::string& name = "a.npy") {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void expect_rejected(const std::string& path, std::initializer_list<std::string> fragments) {
  try {
    fs::read_npy(path);
    BOOST_ERROR("accepted " << path);
  } catch (const fs::InputError& error) {
    const std::string message = error.what();
    BOOST_TEST(contains(message, path), message);
    for (const std::string& fragment : fragments) {
      BOOST_TEST(contains(message, fragment), "'" << fragment << "' not in: " << message);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_float_and_integer_arrays_exactly) {
  const TempDir dir;
  const std::vector<float> floats = {1.5f, -2.25f, 0.0f, 3e-38f, 7.0f, -0.0f};
  const fs::NpyArray a = fs::read_npy(write(dir, npy_bytes(dict("<f4", "(2, 3)"), raw(floats))));
  BOOST_TEST(a.dtype == "<f4");
  BOOST_TEST(a.shape == (std::vector<int64_t>{2, 3}), boost::test_tools::per_element());
  BOOST_TEST(a.count() == 6);
  BOOST_TEST(a.as_float() == floats, boost::test_tools::per_element());

  const std::vector<int64_t> longs = {-5, 0, 1LL << 40, 16777216};
  const fs::NpyArray b = fs::read_npy(write(dir, npy_bytes(dict("<i8", "(4,)"), raw(longs), 2)));
  BOOST_TEST(b.as_int64() == longs, boost::test_tools::per_element());
  BOOST_CHECK_THROW(b.as_float(), fs::InputError);  // 2^40 is beyond float's exact integers

  const std::vector<uint8_t> bytes = {0, 7, 255};
  const fs::NpyArray c = fs::read_npy(write(dir, npy_bytes(dict("|u1", "(3,)"), raw(bytes), 3)));
  BOOST_TEST(c.as_int64() == (std::vector<int64_t>{0, 7, 255}), boost::test_tools::per_element());
  BOOST_TEST(c.as_float() == (std::vector<float>{0, 7, 255}), boost::test_tools::per_element());

  const std::vector<double> doubles = {0.1, -1e300};
  const fs::NpyArray d = fs::read_npy(write(dir, npy_bytes(dict("<f8", "(2,)"), raw(doubles))));
  BOOST_TEST(d.as_float()[0] == 0.1f);  // rounded to the nearest float
  BOOST_TEST(std::isinf(d.as_float()[1]));
  BOOST_CHECK_THROW(d.as_int64(), fs::InputError);

  const std::vector<int16_t> shorts = {-32768, 32767};
  BOOST_TEST(fs::read_npy(write(dir, npy_bytes(dict("<i2", "(1, 2)"), raw(shorts)))).as_int64() ==
                 (std::vector<int64_t>{-32768, 32767}),
             boost::test_tools::per_element());
  const std::vector<uint64_t> huge = {uint64_t{1} << 63};
  BOOST_CHECK_THROW(fs::read_npy(write(dir, npy_bytes(dict("<u8", "(1,)"), raw(huge)))).as_int64(),
                    fs::InputError);
  const std::vector<uint8_t> flags = {0, 1, 1};
  BOOST_TEST(fs::read_npy(write(dir, npy_bytes(dict("|b1", "(3,)"), raw(flags)))).as_int64() ==
                 (std::vector<int64_t>{0, 1, 1}),
             boost::test_tools::per_element());

  // A 0-d array holds one element; a (0, 4) array none.
  BOOST_TEST(fs::read_npy(write(dir, npy_bytes(dict("<f4", "()"), raw(std::vector<float>{2.0f}))))
                 .count() == 1);
  BOOST_TEST(fs::read_npy(write(dir, npy_bytes(dict("<f4", "(0, 4)"), ""))).count() == 0);

  // The header alone: validated (size included), data not kept.
  const fs::NpyArray header =
      fs::read_npy_header(write(dir, npy_bytes(dict("<f4", "(2, 3)"), raw(floats))));
  BOOST_TEST(header.shape == (std::vector<int64_t>{2, 3}), boost::test_tools::per_element());
  BOOST_TEST(header.data.empty());
}

BOOST_AUTO_TEST_CASE(reads_what_numpy_writes) {
  const TempDir dir;
  const std::string path = dir.file("numpy.npy");
  const std::string command = "/usr/bin/python3 -c \"import numpy as np; np.save('" + path +
                              "', (np.arange(24, dtype='<i2') - 7).reshape(2, 3, 4))\"";
  BOOST_TEST_REQUIRE(std::system(command.c_str()) == 0, "numpy could not write " << path);
  const fs::NpyArray array = fs::read_npy(path);
  BOOST_TEST(array.dtype == "<i2");
  BOOST_TEST(array.shape == (std::vector<int64_t>{2, 3, 4}), boost::test_tools::per_element());
  const std::vector<int64_t> values = array.as_int64();
  for (int64_t i = 0; i < 24; ++i) BOOST_TEST(values[static_cast<size_t>(i)] == i - 7);
}

BOOST_AUTO_TEST_CASE(malformed_files_are_rejected) {
  const TempDir dir;
  const std::string four_floats = raw(std::vector<float>{1, 2, 3, 4});
  expect_rejected(write(dir, "PK\x03\x04 not numpy at all"), {"magic"});
  std::string bad_version = npy_bytes(dict("<f4", "(4,)"), four_floats);
  bad_version[6] = 4;
  expect_rejected(write(dir, bad_version), {"version 4"});
  expect_rejected(write(dir, std::string("\x93NUMPY\x01\x00\xff\xff", 10) + "{}"),
                  {"header length 65535"});
  expect_rejected(write(dir, npy_bytes(dict("<f4", "(4,)", "True"), four_floats)),
                  {"fortran_order", "Fortran"});
  expect_rejected(write(dir, npy_bytes(dict(">f4", "(4,)"), four_floats)), {"descr", "big-endian"});
  expect_rejected(write(dir, npy_bytes(dict("<c8", "(2,)"), four_floats)), {"descr", "<c8"});
  expect_rejected(write(dir, npy_bytes(dict("<f4", "(5,)"), four_floats)),
                  {"data holds 16 bytes", "needs 20"});
  expect_rejected(write(dir, npy_bytes(dict("<f4", "(3,)"), four_floats)),
                  {"data holds 16 bytes", "needs 12"});
  expect_rejected(
      write(dir, npy_bytes(dict("<f4", "(4294967296, 4294967296, 4294967296)"), four_floats)),
      {"shape", "overflow"});
  expect_rejected(write(dir, npy_bytes("{'descr': '<f4', 'shape': (4,), }", four_floats)),
                  {"fortran_order"});
  expect_rejected(
      write(dir, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}",
                           four_floats)),
      {"unknown key 'x'"});
  expect_rejected(
      write(dir, npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (4,)}", four_floats)),
      {"malformed header"});
  expect_rejected(write(dir, npy_bytes(dict("<f4", "(-4,)"), four_floats)), {"shape"});
  expect_rejected(write(dir, "\x93NUMPY\x01"), {"magic"});
  BOOST_CHECK_THROW(fs::read_npy(dir.file("absent.npy")), fs::InputError);
}
