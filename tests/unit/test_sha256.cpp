#define BOOST_TEST_MODULE sha256
// SHA-256 against the FIPS 180-4 example messages and against digests computed with
// /usr/bin/python3's hashlib for lengths around the padding boundaries (55/56 bytes: the
// length field still fits / no longer fits in the last block; 63/64/65: block boundaries).
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <iterator>
#include <string>

#include "fixture.hpp"
#include "fracsweep/util/sha256.hpp"
#include "shared_data.hpp"

using fracsweep::sha256_hex;

BOOST_AUTO_TEST_CASE(fips_180_4_examples) {
  BOOST_TEST(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  BOOST_TEST(sha256_hex("abc") ==
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  BOOST_TEST(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                        "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") ==
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  BOOST_TEST(sha256_hex(std::string(1000000, 'a')) ==
             "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

BOOST_AUTO_TEST_CASE(padding_boundaries_match_hashlib) {
  BOOST_TEST(sha256_hex(std::string(55, 'a')) ==
             "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  BOOST_TEST(sha256_hex(std::string(56, 'a')) ==
             "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  BOOST_TEST(sha256_hex(std::string(63, 'a')) ==
             "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
  BOOST_TEST(sha256_hex(std::string(64, 'a')) ==
             "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  BOOST_TEST(sha256_hex(std::string(65, 'a')) ==
             "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0");
}

BOOST_AUTO_TEST_CASE(binary_bytes_including_nul_and_high_bytes) {
  // hashlib over bytes(range(256)) * 3 (whole blocks) and with bytes(range(200, 256)) appended
  // (a partial last block of high bytes): embedded NULs must not end the message and bytes
  // >= 0x80 must not be sign-extended.
  std::string all_bytes;  // (768) 0x00..0xff three times
  for (int repeat = 0; repeat < 3; ++repeat) {
    for (int byte = 0; byte < 256; ++byte) all_bytes += static_cast<char>(byte);
  }
  BOOST_TEST(sha256_hex(all_bytes) ==
             "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363");
  for (int byte = 200; byte < 256; ++byte) all_bytes += static_cast<char>(byte);
  BOOST_TEST(sha256_hex(all_bytes) ==
             "e8f953ae6a2169bc34fa53eb0a7d7087eea1a33ce5376529c01b2360f644eee4");
}

BOOST_AUTO_TEST_CASE(model_file_digest_matches_fixture,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const fracsweep::test::Fixture fixture;
  std::ifstream in(fracsweep::test::shared_file("models/stories260K/stories260K.bin"),
                   std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  BOOST_TEST(bytes.size() == 1056540u);
  BOOST_TEST(sha256_hex(bytes) == fixture.text("model.sha256"));
}
