// Perturbation in the stored number format: f16 and bf16 tensors are perturbed on their 16-bit
// patterns (a bit flip flips exactly one stored bit, of the right class), computed values are
// rounded to the stored type, the float32 working values are their exact widening, and restore
// is bitwise. f32 tensors in the same model behave exactly as before.
#define BOOST_TEST_MODULE stored_dtype
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <set>

#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/util/error.hpp"

using namespace fracsweep;

namespace {

constexpr int64_t n_per_tensor = 4000;

// Patterns of tensor `stored`: varied magnitudes and signs, all finite.
uint16_t pattern_for(StoredType stored, int64_t i) {
  const float value = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) *
                                         std::pow(2.0, static_cast<double>(i % 9) - 6));
  return round_to_stored16(stored, value);
}

// "f" (float32), "h" (f16) and "b" (bf16), n_per_tensor elements each, in that order.
Model mixed_model() {
  Model model;
  model.path = "mixed";
  const StoredType types[] = {StoredType::f32, StoredType::f16, StoredType::bf16};
  const char* names[] = {"f", "h", "b"};
  for (int t = 0; t < 3; ++t) {
    model.tensors.push_back(
        TensorInfo{names[t], {n_per_tensor}, t * n_per_tensor, n_per_tensor, types[t]});
    for (int64_t i = 0; i < n_per_tensor; ++i) {
      const StoredType pattern_type = types[t] == StoredType::f32 ? StoredType::bf16 : types[t];
      model.values.push_back(stored16_to_float(pattern_type, pattern_for(pattern_type, i)) *
                             1.001f);
    }
  }
  // The 16-bit tensors hold exactly representable values.
  for (int t = 1; t < 3; ++t) {
    for (int64_t i = 0; i < n_per_tensor; ++i) {
      model.values[static_cast<size_t>(t * n_per_tensor + i)] =
          stored16_to_float(types[t], pattern_for(types[t], i));
    }
  }
  return model;
}

struct Trial {
  std::vector<Touched> undo;
  std::vector<SiteRecord> record;
};

Trial run(Model& model, Perturber& perturber, const std::string& text, int64_t k,
          int64_t seed = 3) {
  Trial trial;
  perturber.apply(model, parse_strategy(text, "test"), k, seed, trial.undo, &trial.record);
  return trial;
}

}  // namespace

BOOST_AUTO_TEST_CASE(widening_round_trips_every_pattern) {
  for (StoredType type : {StoredType::f16, StoredType::bf16}) {
    for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
      const auto pattern = static_cast<uint16_t>(bits);
      const float widened = stored16_to_float(type, pattern);
      BOOST_TEST_REQUIRE(float_to_stored16(type, widened) == pattern, stored_type_name(type)
                                                                          << " " << bits);
      // Widening agrees with the plain conversions wherever they are defined bit for bit.
      if (!std::isnan(widened)) {
        const float plain =
            type == StoredType::f16 ? half_to_float(pattern) : bf16_to_float(pattern);
        BOOST_TEST_REQUIRE(std::bit_cast<uint32_t>(widened) == std::bit_cast<uint32_t>(plain));
      }
    }
  }
  // Hand-checked values: 1.0 and the largest finite of each format.
  BOOST_TEST(stored16_to_float(StoredType::f16, 0x3C00) == 1.0f);
  BOOST_TEST(stored16_to_float(StoredType::f16, 0x7BFF) == 65504.0f);
  BOOST_TEST(stored16_to_float(StoredType::bf16, 0x3F80) == 1.0f);
  BOOST_TEST(round_to_stored16(StoredType::bf16, 1.0f + 1.0f / 256) == 0x3F80);  // tie to even
  BOOST_TEST(round_to_stored16(StoredType::f16, 1.0f + 1.0f / 1024) == 0x3C01);
}

BOOST_AUTO_TEST_CASE(bitflip_flips_exactly_one_stored_bit_of_its_class) {
  struct Class {
    const char* bits;
    int f16_low, f16_high, bf16_low, bf16_high;  // inclusive ranges
  };
  const Class classes[] = {{"any", 0, 15, 0, 15},       {"sign", 15, 15, 15, 15},
                           {"exponent", 10, 14, 7, 14}, {"exponent-msb", 14, 14, 14, 14},
                           {"mantissa", 0, 9, 0, 6},    {"5", 5, 5, 5, 5}};
  Model model = mixed_model();
  const std::vector<float> pristine(model.values.begin(), model.values.end());
  Perturber perturber(model, 7, "mixed");
  for (const Class& c : classes) {
    const std::string strategy = std::string("bitflip bits=") + c.bits + " include=h,b";
    const int64_t k = 2 * n_per_tensor / 2;  // half of the in-scope parameters
    const Trial trial = run(model, perturber, strategy, k);
    BOOST_TEST_REQUIRE(trial.record.size() == static_cast<size_t>(k));
    std::set<int> seen[2];  // flipped bit positions per tensor (f16, bf16)
    for (const SiteRecord& site : trial.record) {
      const bool bf16 = site.offset >= 2 * n_per_tensor;
      const StoredType type = bf16 ? StoredType::bf16 : StoredType::f16;
      const uint16_t before = float_to_stored16(type, site.old_value);
      const uint16_t after = float_to_stored16(type, site.new_value);
      // The working value is the exact widening of the new pattern ...
      BOOST_TEST_REQUIRE(std::bit_cast<uint32_t>(site.new_value) ==
                         std::bit_cast<uint32_t>(stored16_to_float(type, after)));
      if (bf16) BOOST_TEST_REQUIRE((std::bit_cast<uint32_t>(site.new_value) & 0xFFFFu) == 0u);
      // ... and exactly one stored bit changed, inside the class.
      const auto changed = static_cast<uint16_t>(before ^ after);
      BOOST_TEST_REQUIRE(std::popcount(changed) == 1, strategy);
      const int bit = std::countr_zero(changed);
      BOOST_TEST_REQUIRE(bit >= (bf16 ? c.bf16_low : c.f16_low), strategy);
      BOOST_TEST_REQUIRE(bit <= (bf16 ? c.bf16_high : c.f16_high), strategy);
      seen[bf16].insert(bit);
    }
    // Every bit of the class is drawn (2000 sites per tensor are plenty).
    BOOST_TEST(seen[0].size() == static_cast<size_t>(c.f16_high - c.f16_low + 1),
               strategy << " f16");
    BOOST_TEST(seen[1].size() == static_cast<size_t>(c.bf16_high - c.bf16_low + 1),
               strategy << " bf16");
    Perturber::restore(model, trial.undo);
    BOOST_TEST_REQUIRE(std::memcmp(model.values.data(), pristine.data(), pristine.size() * 4) == 0);
  }
}

BOOST_AUTO_TEST_CASE(computed_values_are_the_float32_rule_rounded_to_the_stored_type) {
  // Reference: the same values in a model whose tensors are all float32 give the float32
  // results; the 16-bit model must hold exactly those results rounded to its stored types.
  Model model = mixed_model();
  Model as_f32 = model;
  for (TensorInfo& t : as_f32.tensors) t.stored = StoredType::f32;
  const std::vector<float> pristine(model.values.begin(), model.values.end());
  Perturber perturber(model, 11, "mixed");
  Perturber reference(as_f32, 11, "mixed");
  for (const char* text :
       {"gaussian sigma=0.3", "gaussian sigma=0.5 relative=std", "scale factor=1.37", "zero",
        "signflip", "random-value", "magnitude then=signflip"}) {
    const Trial trial = run(model, perturber, text, 3 * n_per_tensor / 3);
    const Trial expected = run(as_f32, reference, text, 3 * n_per_tensor / 3);
    BOOST_TEST_REQUIRE(trial.record.size() == expected.record.size());
    int64_t rounded_differently = 0;
    for (size_t i = 0; i < trial.record.size(); ++i) {
      const SiteRecord& site = trial.record[i];
      BOOST_TEST_REQUIRE(site.offset == expected.record[i].offset);  // same sites
      const float float32_result = expected.record[i].new_value;
      float want = float32_result;
      if (site.offset >= n_per_tensor) {
        const bool bf16 = site.offset >= 2 * n_per_tensor;
        want = bf16 ? bf16_to_float(float_to_bf16(float32_result))
                    : half_to_float(float_to_half(float32_result));
      }
      rounded_differently += want != float32_result;
      BOOST_TEST_REQUIRE(std::bit_cast<uint32_t>(site.new_value) == std::bit_cast<uint32_t>(want),
                         text << " site " << site.offset);
    }
    const bool computed = std::string(text).starts_with("gaussian") ||
                          std::string(text).starts_with("scale") ||
                          std::string(text).starts_with("random");
    if (computed) BOOST_TEST(rounded_differently > 0, text);  // the rounding really happened
    Perturber::restore(model, trial.undo);
    Perturber::restore(as_f32, expected.undo);
    BOOST_TEST_REQUIRE(std::memcmp(model.values.data(), pristine.data(), pristine.size() * 4) == 0);
  }
}

BOOST_AUTO_TEST_CASE(float32_tensors_are_unchanged_by_the_stored_type_logic) {
  // The f32 tensor "f" of the mixed model gets exactly the binary32 bit flips of before.
  Model model = mixed_model();
  Perturber perturber(model, 5, "mixed");
  const Trial trial = run(model, perturber, "bitflip bits=any include=f", 1000);
  std::set<int> bits;
  for (const SiteRecord& site : trial.record) {
    const uint32_t changed =
        std::bit_cast<uint32_t>(site.old_value) ^ std::bit_cast<uint32_t>(site.new_value);
    BOOST_TEST_REQUIRE(std::popcount(changed) == 1);
    bits.insert(std::countr_zero(changed));
  }
  BOOST_TEST(bits.size() == 32u);
}

BOOST_AUTO_TEST_CASE(strategies_must_fit_the_stored_width_and_types_are_recorded) {
  const Model model = mixed_model();
  BOOST_CHECK_NO_THROW(
      check_strategy_fits(parse_strategy("bitflip bits=20 include=f", "t"), model.tensors, "job"));
  BOOST_CHECK_NO_THROW(
      check_strategy_fits(parse_strategy("bitflip bits=15", "t"), model.tensors, "job"));
  try {
    check_strategy_fits(parse_strategy("bitflip bits=20", "t"), model.tensors, "job.ini");
    BOOST_FAIL("bits=20 accepted on a 16-bit tensor");
  } catch (const InputError& error) {
    BOOST_TEST(std::string(error.what()) ==
               "job.ini: bits=20 is outside tensor 'h', stored as f16 (bits 0..15)");
  }
  BOOST_CHECK_THROW(
      check_strategy_fits(parse_strategy("magnitude then=bitflip bits=16 include=b", "t"),
                          model.tensors, "job"),
      InputError);
  Perturber perturber(model, 0, "mixed");
  BOOST_TEST(perturber.scope_stored_types(Scope{}) == "f32+f16+bf16");
  BOOST_TEST(perturber.scope_stored_types(Scope{{"b"}, {}}) == "bf16");
  BOOST_TEST(perturber.scope_stored_types(Scope{{"f", "h"}, {}}) == "f32+f16");
}
