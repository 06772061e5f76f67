#define BOOST_TEST_MODULE text
// util/text.hpp: splitting, joining and the shortest round-trip number text. Expected strings
// are written out by hand; the number texts are those std::to_chars must give (the shortest
// digits that read back exactly, scientific when that is shorter), e.g. the labels
// "gaussian(sigma=0.1,...)" and amount "0.001" of the stored claims results.
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fracsweep/util/text.hpp"

namespace fs = fracsweep;
using Words = std::vector<std::string>;

BOOST_AUTO_TEST_CASE(split_by_character_drops_empty_parts) {
  BOOST_TEST(fs::split("a,b,c", ',') == (Words{"a", "b", "c"}), boost::test_tools::per_element());
  BOOST_TEST(fs::split(",a,,b,", ',') == (Words{"a", "b"}), boost::test_tools::per_element());
  BOOST_TEST(fs::split("layers.*", ',') == (Words{"layers.*"}), boost::test_tools::per_element());
  BOOST_TEST(fs::split("", ',').empty());
  BOOST_TEST(fs::split(",,,", ',').empty());
}

BOOST_AUTO_TEST_CASE(split_whitespace_takes_runs_of_any_whitespace) {
  BOOST_TEST(fs::split_whitespace("  zero\tsigma=0.1 \n relative=std  ") ==
                 (Words{"zero", "sigma=0.1", "relative=std"}),
             boost::test_tools::per_element());
  BOOST_TEST(fs::split_whitespace("one") == (Words{"one"}), boost::test_tools::per_element());
  BOOST_TEST(fs::split_whitespace(" \t\n").empty());
}

BOOST_AUTO_TEST_CASE(join_any_container_of_strings) {
  BOOST_TEST(fs::join(Words{"a", "b", "c"}, ",") == "a,b,c");
  BOOST_TEST(fs::join(Words{"only"}, ", ") == "only");
  BOOST_TEST(fs::join(Words{}, ", ") == "");
  // A std::set joins in its (sorted) order; multi-character separators are kept whole.
  BOOST_TEST(fs::join(std::set<std::string>{"weight", "bias", "eps"}, ", ") == "bias, eps, weight");
  // split then join restores a list without empty parts.
  BOOST_TEST(fs::join(fs::split("x,y,z", ','), ",") == "x,y,z");
}

BOOST_AUTO_TEST_CASE(shortest_number_text_reads_back_exactly) {
  BOOST_TEST(fs::shortest_number_text(0.1) == "0.1");
  BOOST_TEST(fs::shortest_number_text(0.001) == "0.001");
  BOOST_TEST(fs::shortest_number_text(1e-5) == "1e-05");
  BOOST_TEST(fs::shortest_number_text(1.0) == "1");
  BOOST_TEST(fs::shortest_number_text(1e4) == "10000");
  BOOST_TEST(fs::shortest_number_text(1e5) == "1e+05");  // shorter than "100000"
  BOOST_TEST(fs::shortest_number_text(123456.0) == "123456");
  BOOST_TEST(fs::shortest_number_text(-2.5) == "-2.5");
  BOOST_TEST(fs::shortest_number_text(0.0) == "0");
  // The longest case: 17 significant digits and a three-digit exponent.
  const double smallest_normal = std::numeric_limits<double>::min();
  BOOST_TEST(fs::shortest_number_text(smallest_normal) == "2.2250738585072014e-308");
  for (double value : {0.1, 1.0 / 3.0, 2e-7, 6.02214076e23, smallest_normal}) {
    BOOST_TEST(std::strtod(fs::shortest_number_text(value).c_str(), nullptr) == value);
  }
}
