#define BOOST_TEST_MODULE perturb
// Perturbation strategies: parsing and labels, scopes, sites (count, scope, nesting, common
// random numbers), the values each strategy writes (checked bit by bit or statistically
// against statistics computed here), magnitude ordering, bitwise restore, and the targeted
// oracles of expected.json on the real stories260K model.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fixture.hpp"
#include "fracsweep/formats/llama2c.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/perturb/rng.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"

using fracsweep::BitClass;
using fracsweep::InputError;
using fracsweep::KeyedRng;
using fracsweep::Model;
using fracsweep::parse_strategy;
using fracsweep::Perturber;
using fracsweep::Scope;
using fracsweep::SigmaRelativeTo;
using fracsweep::SiteRecord;
using fracsweep::StrategyKind;
using fracsweep::StrategySpec;
using fracsweep::TargetAction;
using fracsweep::TensorInfo;
using fracsweep::Touched;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();
constexpr uint64_t job_seed = 7;

uint32_t bits_of(float value) {
  return std::bit_cast<uint32_t>(value);
}
float float_of_bits(uint32_t bits) {
  return std::bit_cast<float>(bits);
}

// A model of 1-D tensors laid out back to back in the given order.
Model make_model(const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
  Model model;
  model.path = "toy.bin";
  model.format = "test";
  for (const auto& [name, values] : tensors) {
    const auto count = static_cast<int64_t>(values.size());
    model.tensors.push_back(TensorInfo{name, {count}, model.n_values(), count});
    model.values.insert(model.values.end(), values.begin(), values.end());
  }
  return model;
}

// 45 parameters with llama-like names; every value distinct and non-zero.
Model named_model() {
  const std::vector<std::pair<std::string, int>> layout = {
      {"tok_embeddings", 12},  {"layers.0.attn.wq", 9}, {"layers.0.ffn.w1", 6},
      {"layers.1.attn.wq", 9}, {"layers.1.ffn.w1", 6},  {"norm_final", 3}};
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  float next = 0.125f;
  for (const auto& [name, count] : layout) {
    std::vector<float> values;  // (count)
    for (int i = 0; i < count; ++i, next += 0.125f) values.push_back(i % 2 ? -next : next);
    tensors.emplace_back(name, values);
  }
  return make_model(tensors);
}

// Two large tensors of very different scale, one all positive (its std is far below its root
// mean square), for statistical checks of the written values; and one with non-finite
// entries (its statistics must use the finite values only).
Model statistical_model() {
  std::mt19937 engine(12345);
  std::uniform_real_distribution<float> magnitude(0.5f, 1.5f);
  std::vector<float> small(6000), large(6000);  // (6000) each
  for (size_t i = 0; i < small.size(); ++i) {
    const float sign = i % 2 ? -1.0f : 1.0f;
    small[i] = 0.02f * magnitude(engine);
    large[i] = sign * 10.0f * magnitude(engine);
  }
  const std::vector<float> odd = {nan_f, inf_f, -2.0f, 3.0f, -inf_f, 1.0f, -0.0f, 0.5f};
  return make_model({{"small", small}, {"large", large}, {"odd", odd}});
}

// The tensor containing `offset`.
const TensorInfo& tensor_at(const Model& model, int64_t offset) {
  for (const TensorInfo& t : model.tensors) {
    if (offset >= t.offset && offset < t.offset + t.count) return t;
  }
  BOOST_FAIL("offset " << offset << " lies in no tensor");
  return model.tensors.front();
}

// Population mean and variance of `values`.
std::pair<double, double> mean_and_variance(const std::vector<double>& values) {
  double sum = 0, sum_sq = 0;
  for (double v : values) {
    sum += v;
    sum_sq += v * v;
  }
  const double n = static_cast<double>(values.size());
  const double mean = sum / n;
  return {mean, sum_sq / n - mean * mean};
}

double chi_square_uniform(const std::vector<int64_t>& counts) {
  double total = 0;
  for (int64_t c : counts) total += static_cast<double>(c);
  const double expected = total / static_cast<double>(counts.size());
  double statistic = 0;
  for (int64_t c : counts) {
    statistic +=
        (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected) / expected;
  }
  return statistic;
}

Scope scope_of(std::vector<std::string> include, std::vector<std::string> exclude) {
  return Scope{std::move(include), std::move(exclude)};
}

StrategySpec parse(const std::string& text) {
  return parse_strategy(text, "test");
}

std::string where_of(const std::string& text) {
  return "job.ini: key 'strategy' ('" + text + "')";
}

// Applies `text` to `k` sites with `seed` and returns the record.
std::vector<SiteRecord> apply_recorded(Model& model, Perturber& perturber, const std::string& text,
                                       int64_t k, int64_t seed) {
  std::vector<Touched> undo;
  std::vector<SiteRecord> record;
  perturber.apply(model, parse(text), k, seed, undo, &record);
  return record;
}

std::vector<int64_t> offsets_of(const std::vector<SiteRecord>& record) {
  std::vector<int64_t> offsets;  // (sites)
  for (const SiteRecord& site : record) offsets.push_back(site.offset);
  return offsets;
}

// The single bit in which old and new differ; -1 when they differ in zero or several bits.
int flipped_bit(const SiteRecord& site) {
  const uint32_t difference = bits_of(site.old_value) ^ bits_of(site.new_value);
  return std::popcount(difference) == 1 ? std::countr_zero(difference) : -1;
}

}  // namespace

// --- parse_strategy and labels -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(every_strategy_parses_to_its_canonical_label) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"zero", "zero"},
      {"  zero  ", "zero"},
      {"signflip", "signflip"},
      {"random-value", "random-value"},
      {"gaussian sigma=0.1", "gaussian(sigma=0.1,relative=abs)"},
      {"gaussian sigma=0.25 relative=std", "gaussian(sigma=0.25,relative=std)"},
      {"gaussian relative=absolute sigma=2", "gaussian(sigma=2,relative=absolute)"},
      {"gaussian sigma=1e-5 relative=abs", "gaussian(sigma=1e-05,relative=abs)"},
      {"scale factor=1.5", "scale(factor=1.5)"},
      {"scale factor=-1", "scale(factor=-1)"},
      {"bitflip", "bitflip(bits=any)"},
      {"bitflip bits=any", "bitflip(bits=any)"},
      {"bitflip bits=sign", "bitflip(bits=sign)"},
      {"bitflip bits=exponent", "bitflip(bits=exponent)"},
      {"bitflip bits=exponent-msb", "bitflip(bits=exponent-msb)"},
      {"bitflip bits=mantissa", "bitflip(bits=mantissa)"},
      {"bitflip bits=0", "bitflip(bits=0)"},
      {"bitflip bits=31", "bitflip(bits=31)"},
      {"magnitude", "magnitude(then=zero)"},
      {"magnitude then=signflip", "magnitude(then=signflip)"},
      {"magnitude then=bitflip", "magnitude(then=bitflip,bits=exponent-msb)"},
      {"magnitude then=bitflip bits=sign", "magnitude(then=bitflip,bits=sign)"},
      {"magnitude bits=12 then=bitflip", "magnitude(then=bitflip,bits=12)"},
      {"zero include=layers.*.attn.*,norm_final exclude=layers.1.*",
       "zero[include=layers.*.attn.*,norm_final;exclude=layers.1.*]"},
      {"zero include=a include=b", "zero[include=a,b;exclude=]"},
      {"gaussian sigma=0.1 exclude=tok_embeddings",
       "gaussian(sigma=0.1,relative=abs)[include=*;exclude=tok_embeddings]"},
      {"bitflip bits=exponent-msb include=layers.*",
       "bitflip(bits=exponent-msb)[include=layers.*;exclude=]"},
  };
  for (const auto& [text, label] : cases) {
    BOOST_TEST(parse(text).canonical() == label, "'" << text << "'");
  }
}

BOOST_AUTO_TEST_CASE(parsed_fields_hold_every_parameter) {
  const StrategySpec gaussian = parse("gaussian sigma=0.25 relative=std include=x,y exclude=z");
  BOOST_TEST((gaussian.kind == StrategyKind::gaussian));
  BOOST_TEST(gaussian.name() == "gaussian");
  BOOST_TEST(gaussian.sigma == 0.25);
  BOOST_TEST((gaussian.relative_to == SigmaRelativeTo::std));
  BOOST_TEST(gaussian.scope.include == (std::vector<std::string>{"x", "y"}));
  BOOST_TEST(gaussian.scope.exclude == (std::vector<std::string>{"z"}));
  BOOST_TEST(!gaussian.deterministic());
  BOOST_TEST(
      (parse("gaussian sigma=3 relative=absolute").relative_to == SigmaRelativeTo::absolute));
  BOOST_TEST((parse("gaussian sigma=3").relative_to == SigmaRelativeTo::abs));

  const StrategySpec scale = parse("scale factor=-0.5");
  BOOST_TEST((scale.kind == StrategyKind::scale));
  BOOST_TEST(scale.factor == -0.5);

  const StrategySpec bit = parse("bitflip bits=17");
  BOOST_TEST((bit.kind == StrategyKind::bitflip));
  BOOST_TEST((bit.bits == BitClass::explicit_bit));
  BOOST_TEST(bit.bit == 17);
  BOOST_TEST((parse("bitflip bits=mantissa").bits == BitClass::mantissa));
  BOOST_TEST((parse("bitflip").bits == BitClass::any));

  const StrategySpec magnitude = parse("magnitude then=bitflip bits=sign");
  BOOST_TEST((magnitude.kind == StrategyKind::magnitude));
  BOOST_TEST(magnitude.name() == "magnitude");
  BOOST_TEST((magnitude.action == TargetAction::bitflip));
  BOOST_TEST((magnitude.bits == BitClass::sign));
  BOOST_TEST(magnitude.deterministic());
  BOOST_TEST((parse("magnitude then=bitflip").bits == BitClass::exponent_msb));
  BOOST_TEST((parse("magnitude then=signflip").action == TargetAction::signflip));
  BOOST_TEST((parse("magnitude").action == TargetAction::zero));
  // flips_bits: exactly the strategies whose `bits` apply.
  BOOST_TEST(bit.flips_bits());
  BOOST_TEST(parse("bitflip").flips_bits());
  BOOST_TEST(magnitude.flips_bits());
  for (const char* text : {"zero", "signflip", "scale factor=2", "gaussian sigma=0.1",
                           "random-value", "magnitude", "magnitude then=signflip"}) {
    BOOST_TEST(!parse(text).flips_bits(), text);
  }
  BOOST_TEST(parse("random-value").name() == "random-value");
  BOOST_TEST((parse("signflip").kind == StrategyKind::signflip));
  BOOST_TEST(parse("zero").scope.include.empty());
}

BOOST_AUTO_TEST_CASE(bad_strategies_throw_input_error_naming_where_and_what) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty strategy"},
      {"flip", "unknown strategy 'flip'"},
      {"Zero", "unknown strategy 'Zero'"},
      {"zero colour=red", "unknown parameter 'colour'"},
      {"zero noequals", "expected key=value"},
      {"zero =1", "expected key=value"},
      {"zero sigma=0.1", "takes no parameter 'sigma'"},
      {"zero then=zero", "takes no parameter 'then'"},
      {"signflip bits=sign", "takes no parameter 'bits'"},
      {"gaussian sigma=0.1 factor=2", "takes no parameter 'factor'"},
      {"scale factor=2 relative=std", "takes no parameter 'relative'"},
      {"gaussian", "gaussian needs sigma"},
      {"gaussian relative=std", "gaussian needs sigma"},
      {"gaussian sigma=abc", "sigma must be a finite number"},
      {"gaussian sigma=0.1x", "sigma must be a finite number"},
      {"gaussian sigma=inf", "sigma must be a finite number"},
      {"gaussian sigma=nan", "sigma must be a finite number"},
      {"gaussian sigma=0", "sigma must be > 0"},
      {"gaussian sigma=-1", "sigma must be > 0"},
      {"gaussian sigma=0.1 relative=rel", "relative must be abs, std or absolute"},
      {"scale", "scale needs factor"},
      {"scale factor=x", "factor must be a finite number"},
      {"bitflip bits=32", "found '32'"},
      {"bitflip bits=-1", "found '-1'"},
      {"bitflip bits=3x", "found '3x'"},
      {"bitflip bits=exponent_msb", "found 'exponent_msb'"},
      {"magnitude then=bitflip bits=exponent", "needs one fixed bit"},
      {"magnitude then=bitflip bits=mantissa", "needs one fixed bit"},
      {"magnitude then=bitflip bits=any", "needs one fixed bit"},
      {"magnitude bits=sign", "bits is only valid with magnitude then=bitflip"},
      {"magnitude then=signflip bits=30", "bits is only valid with magnitude then=bitflip"},
      {"magnitude then=scale", "then must be zero, signflip or bitflip"},
      {"zero include=", "include needs at least one pattern"},
      {"zero exclude=,,", "exclude needs at least one pattern"},
  };
  for (const auto& [text, fragment] : cases) {
    const std::string where = where_of(text);
    try {
      parse_strategy(text, where);
      BOOST_ERROR("no InputError for '" << text << "'");
    } catch (const InputError& e) {
      const std::string message = e.what();
      BOOST_TEST(message.starts_with(where + ": "), "message lacks where: " << message);
      BOOST_TEST(message.find(fragment) != std::string::npos,
                 "'" << text << "': message lacks '" << fragment << "': " << message);
    }
  }
}

// --- Scope ---------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(scope_globs_include_exclude_and_canonical) {
  const Scope everything;
  BOOST_TEST(everything.matches("tok_embeddings"));
  BOOST_TEST(everything.matches(""));
  BOOST_TEST(everything.canonical() == "include=*;exclude=");

  const Scope attention{{"layers.*.attn.w?"}, {}};
  BOOST_TEST(attention.matches("layers.0.attn.wq"));
  BOOST_TEST(attention.matches("layers.12.attn.wo"));   // '*' spans several characters
  BOOST_TEST(!attention.matches("layers.0.attn.wqq"));  // '?' is exactly one character
  BOOST_TEST(!attention.matches("layers.0.attn.w"));
  BOOST_TEST(!attention.matches("layers.0.attn_norm"));
  BOOST_TEST(!attention.matches("xlayers.0.attn.wq"));  // anchored at both ends
  BOOST_TEST(attention.canonical() == "include=layers.*.attn.w?;exclude=");

  const Scope backtracking{{"*a*b"}, {}};
  BOOST_TEST(backtracking.matches("xaxxab"));
  BOOST_TEST(backtracking.matches("ab"));
  BOOST_TEST(!backtracking.matches("xbxa"));
  BOOST_TEST(!backtracking.matches("abx"));
  BOOST_TEST(scope_of({"layers.*"}, {}).matches("layers."));  // '*' matches the empty run
  BOOST_TEST(!scope_of({"layers.?"}, {}).matches("layers."));
  BOOST_TEST(scope_of({"a.b"}, {}).matches("a.b"));
  BOOST_TEST(!scope_of({"a.b"}, {}).matches("axb"));  // '.' is literal

  const Scope restricted{{"layers.*", "norm_final"}, {"*.ffn.*", "layers.1.*"}};
  BOOST_TEST(restricted.matches("layers.0.attn.wq"));
  BOOST_TEST(restricted.matches("norm_final"));
  BOOST_TEST(!restricted.matches("layers.0.ffn.w1"));
  BOOST_TEST(!restricted.matches("layers.1.attn.wq"));
  BOOST_TEST(!restricted.matches("tok_embeddings"));
  BOOST_TEST(restricted.canonical() == "include=layers.*,norm_final;exclude=*.ffn.*,layers.1.*");

  const Scope exclude_only{{}, {"tok_*"}};
  BOOST_TEST(!exclude_only.matches("tok_embeddings"));
  BOOST_TEST(exclude_only.matches("norm_final"));
  BOOST_TEST(exclude_only.canonical() == "include=*;exclude=tok_*");
}

// --- sites ---------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(scope_size_counts_in_scope_parameters) {
  Model model = named_model();
  Perturber perturber(model, job_seed, "toy");
  BOOST_TEST(perturber.scope_size(Scope{}) == 45);
  BOOST_TEST(perturber.scope_size(scope_of({"layers.*.attn.*"}, {})) == 18);
  BOOST_TEST(perturber.scope_size(scope_of({"layers.*"}, {"*.ffn.*"})) == 18);
  BOOST_TEST(perturber.scope_size(scope_of({"norm_final", "tok_embeddings"}, {})) == 15);
  BOOST_TEST(perturber.scope_size(scope_of({"nothing"}, {})) == 0);
}

namespace {

// A batch-norm model: c.weight 0..3, bn.weight 4..5, bn.bias 6..7, bn.running_mean 8..9 and
// bn.running_var 10..11 (buffers, the largest values), fc.weight 12..17.
Model model_with_buffers() {
  Model model = make_model({{"c.weight", {0.5f, -0.25f, 0.75f, -1.0f}},
                            {"bn.weight", {1.25f, 0.9f}},
                            {"bn.bias", {-0.1f, 0.2f}},
                            {"bn.running_mean", {40.0f, -50.0f}},
                            {"bn.running_var", {60.0f, 70.0f}},
                            {"fc.weight", {0.3f, -0.6f, 0.1f, 0.2f, -0.4f, 0.8f}}});
  for (TensorInfo& t : model.tensors) {
    if (t.name.find(".running_") != std::string::npos) t.role = fracsweep::TensorRole::buffer;
  }
  return model;
}

bool touches_buffer(const Model& model, const std::vector<int64_t>& offsets) {
  return std::any_of(offsets.begin(), offsets.end(),
                     [&](int64_t o) { return tensor_at(model, o).is_buffer(); });
}

}  // namespace

BOOST_AUTO_TEST_CASE(buffers_are_in_scope_only_under_an_explicit_include) {
  // The scope rule: a buffer needs an include pattern other than '*'; exclude still applies.
  BOOST_TEST(Scope{}.contains("bn.running_var", false));
  BOOST_TEST(!Scope{}.contains("bn.running_var", true));
  BOOST_TEST(!scope_of({"*"}, {}).contains("bn.running_var", true));  // unnormalised include=*
  BOOST_TEST(!parse("zero include=*").scope.contains("bn.running_var", true));
  BOOST_TEST(parse("zero include=*.running_*").scope.contains("bn.running_var", true));
  BOOST_TEST(!parse("zero include=*.running_*").scope.contains("bn.weight", false));
  BOOST_TEST(parse("zero include=bn.*").scope.contains("bn.running_mean", true));
  BOOST_TEST(parse("zero include=bn.*").scope.contains("bn.weight", false));
  BOOST_TEST(
      !parse("zero include=*.running_* exclude=*_var").scope.contains("bn.running_var", true));
  BOOST_TEST(!parse("zero exclude=fc.*").scope.contains("bn.running_mean", true));

  Model model = model_with_buffers();
  BOOST_TEST(model.n_values() == 18);
  BOOST_TEST(model.n_parameters() == 14);
  BOOST_TEST(model.n_buffer_values() == 4);
  Perturber perturber(model, job_seed, "bn");
  BOOST_TEST(perturber.scope_size(Scope{}) == 14);  // "fraction of weights": learned ones
  BOOST_TEST(perturber.scope_size(parse("zero include=*").scope) == 14);
  BOOST_TEST(perturber.scope_size(parse("zero include=*.running_*").scope) == 4);
  BOOST_TEST(perturber.scope_size(parse("zero include=bn.*").scope) == 8);
  BOOST_TEST(perturber.scope_size(parse("zero include=*.running_var").scope) == 2);

  // Every site of every default-scope strategy, at fraction 1, is a learned parameter; the
  // buffers keep their bits.
  const std::vector<float> pristine(model.values.begin(), model.values.end());
  for (const std::string text : {"gaussian sigma=10 relative=abs", "zero", "bitflip bits=any",
                                 "random-value", "magnitude", "magnitude then=bitflip"}) {
    BOOST_TEST_CONTEXT(text) {
      const auto record = apply_recorded(model, perturber, text, 14, 3);
      BOOST_TEST(record.size() == 14u);
      BOOST_TEST(!touches_buffer(model, offsets_of(record)));
      for (int64_t o = 8; o < 12; ++o) BOOST_TEST(bits_of(model.values[o]) == bits_of(pristine[o]));
      std::vector<Touched> undo;
      for (const SiteRecord& site : record) undo.push_back({site.offset, site.old_value});
      Perturber::restore(model, undo);
    }
  }
  // Gradient- and activation-guided rankings (taylor, finetune, wanda) respect the scope too,
  // even where the buffers' scores are the largest.
  std::vector<float> gradient(18, 0.01f);  // (n_values)
  for (int64_t o = 8; o < 12; ++o) gradient[static_cast<size_t>(o)] = 100.0f;
  perturber.add_gradient("nll", gradient);
  perturber.add_input_norms(std::vector<float>(18, 1.0f));
  for (const std::string text :
       {"taylor", "taylor then=bitflip", "finetune", "finetune sites=random", "wanda"}) {
    BOOST_TEST_CONTEXT(text) {
      const std::vector<int64_t> sites = perturber.select_sites(parse(text), 14, 0);
      BOOST_TEST(sites.size() == 14u);
      BOOST_TEST(!touches_buffer(model, sites));
    }
  }
  // An explicit include reaches the buffers, and only them.
  const auto running = perturber.select_sites(parse("taylor include=*.running_*"), 4, 0);
  BOOST_TEST(
      (std::set<int64_t>(running.begin(), running.end()) == std::set<int64_t>{8, 9, 10, 11}));
  const auto gaussian =
      offsets_of(apply_recorded(model, perturber, "gaussian sigma=1 include=*.running_var", 2, 1));
  BOOST_TEST((std::set<int64_t>(gaussian.begin(), gaussian.end()) == std::set<int64_t>{10, 11}));
  BOOST_TEST(fracsweep::stored_types_in_scope(model.tensors,
                                              parse("zero include=*.running_*").scope) == "f32");
}

BOOST_AUTO_TEST_CASE(key_texts_are_the_documented_strings) {
  Model model = named_model();
  const Perturber perturber(model, job_seed, "toy");
  BOOST_TEST(perturber.sites_key_text(Scope{}, 3) ==
             "fracsweep-sites-v1|job_seed=7|model=toy|scope=include=*;exclude=|seed=3");
  BOOST_TEST(perturber.sites_key_text(scope_of({"a", "b"}, {"c"}), -2) ==
             "fracsweep-sites-v1|job_seed=7|model=toy|scope=include=a,b;exclude=c|seed=-2");
  BOOST_TEST(
      perturber.values_key_text(parse("gaussian sigma=0.1"), 3) ==
      "fracsweep-values-v1|job_seed=7|model=toy|strategy=gaussian(sigma=0.1,relative=abs)|seed=3");
  const Perturber big_seed(model, UINT64_MAX, "m");
  BOOST_TEST(
      big_seed.sites_key_text(Scope{}, 0) ==
      "fracsweep-sites-v1|job_seed=18446744073709551615|model=m|scope=include=*;exclude=|seed=0");
}

BOOST_AUTO_TEST_CASE(sites_follow_the_documented_recipe) {
  // key_from_text of this sites text is 0x81994c3bcae7dc45 (computed in python); the sites are
  // the keyed permutation's prefix (site recipe feistel-v1) of that stream, read as indices of
  // the in-scope space. Expected indices from analysis/fracsweep_analysis/rng.py.
  Model model = named_model();
  Perturber perturber(model, job_seed, "toy");
  BOOST_TEST(fracsweep::key_from_text(perturber.sites_key_text(Scope{}, 3)) ==
             0x81994c3bcae7dc45ULL);
  const std::vector<int64_t> expected = {4,  42, 12, 18, 13, 8,  11, 28, 31, 29,
                                         10, 3,  32, 24, 40, 16, 23, 37, 1,  5};
  BOOST_TEST(perturber.select_sites(parse("zero"), 20, 3) == expected);  // full scope: identity map

  // Scope layers.* without ffn: in-scope index i < 9 is layers.0.attn.wq[i] (offset 12 + i),
  // 9 <= i < 18 is layers.1.attn.wq[i - 9] (offset 27 + i - 9). Indices of the python mirror
  // for the key text sites_key_text(attention.scope, 5).
  const StrategySpec attention = parse("zero include=layers.* exclude=*.ffn.*");
  BOOST_TEST(
      perturber.sites_key_text(attention.scope, 5) ==
      "fracsweep-sites-v1|job_seed=7|model=toy|scope=include=layers.*;exclude=*.ffn.*|seed=5");
  std::vector<int64_t> mapped;  // (18)
  for (int64_t index : {1, 10, 11, 2, 13, 4, 3, 6, 5, 15, 14, 12, 16, 0, 17, 9, 7, 8}) {
    mapped.push_back(index < 9 ? 12 + index : 27 + index - 9);
  }
  BOOST_TEST(perturber.select_sites(attention, 18, 5) == mapped);
}

BOOST_AUTO_TEST_CASE(apply_does_not_depend_on_the_thread_count) {
  // Every parameter of a 12008-value model (several parallel chunks), at 1 and at 3 threads:
  // the same sites in the same order, the same new values bit for bit, an undo log that lists
  // the sites of select_sites with their old values, and an exact restore.
  const Model pristine = statistical_model();
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stats");
  const StrategySpec strategy = parse("gaussian sigma=0.5 relative=std");
  const int64_t n = perturber.scope_size(strategy.scope);
  const std::vector<int64_t> sites = perturber.select_sites(strategy, n, 2);  // (n)
  const int threads_before = omp_get_max_threads();
  std::vector<std::vector<uint32_t>> written;  // per thread count: (n) new value bits by rank
  for (int threads : {1, 3}) {
    omp_set_num_threads(threads);
    std::vector<Touched> undo;
    std::vector<SiteRecord> record;
    const int64_t changed = perturber.apply(model, strategy, n, 2, undo, &record);
    BOOST_TEST_REQUIRE(static_cast<int64_t>(undo.size()) == n);
    BOOST_TEST(changed > n - 20);  // gaussian changes all but non-finite and zero values
    std::vector<uint32_t> bits;    // (n)
    for (int64_t rank = 0; rank < n; ++rank) {
      const auto r = static_cast<size_t>(rank);
      BOOST_TEST_REQUIRE(undo[r].offset == sites[r]);
      BOOST_TEST_REQUIRE(std::bit_cast<uint32_t>(undo[r].old_value) ==
                         std::bit_cast<uint32_t>(pristine.values[static_cast<size_t>(sites[r])]));
      BOOST_TEST_REQUIRE(record[r].offset == sites[r]);
      BOOST_TEST_REQUIRE(std::bit_cast<uint32_t>(record[r].new_value) ==
                         std::bit_cast<uint32_t>(model.values[static_cast<size_t>(sites[r])]));
      bits.push_back(std::bit_cast<uint32_t>(record[r].new_value));
    }
    written.push_back(bits);
    Perturber::restore(model, undo);
    BOOST_TEST(std::memcmp(model.values.data(), pristine.values.data(),
                           model.values.size() * sizeof(float)) == 0);
  }
  omp_set_num_threads(threads_before);
  BOOST_TEST(written[0] == written[1]);
}

BOOST_AUTO_TEST_CASE(offset_order_visits_write_what_rank_order_visits_write) {
  // One trial visited by rank (the plain reference) and in offset order at 1 and 3 threads,
  // for k from one site to the whole scope (scopes of 12008 and 6008 values: several chunks):
  // the same values bit for bit at the same sites, the same change count, an undo log naming
  // each site once, in ascending offsets, with its old value, and an exact restore.
  const Model pristine = statistical_model();
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stats");
  const int threads_before = omp_get_max_threads();
  for (const std::string text :
       {"gaussian sigma=0.5 relative=std", "bitflip", "bitflip bits=exponent", "zero",
        "random-value", "signflip exclude=small"}) {
    const StrategySpec strategy = parse(text);
    const int64_t n = perturber.scope_size(strategy.scope);
    for (int64_t k : {int64_t{1}, int64_t{4097}, n / 2 - 1, n / 2, n - 1, n}) {
      perturber.set_site_visits(Perturber::SiteVisits::by_rank);
      std::vector<Touched> undo;
      const int64_t changed_by_rank = perturber.apply(model, strategy, k, 3, undo);
      const std::vector<float> written(model.values.begin(), model.values.end());  // (n_values)
      std::vector<int64_t> sites;  // (k) ascending offsets
      for (const Touched& site : undo) sites.push_back(site.offset);
      std::sort(sites.begin(), sites.end());
      Perturber::restore(model, undo, fracsweep::UndoOffsets::distinct);
      perturber.set_site_visits(Perturber::SiteVisits::in_offset_order);
      for (int threads : {1, 3}) {
        omp_set_num_threads(threads);
        const int64_t changed = perturber.apply(model, strategy, k, 3, undo);
        const std::string where =
            text + ", k = " + std::to_string(k) + ", " + std::to_string(threads) + " threads";
        BOOST_TEST_REQUIRE(changed == changed_by_rank, where);
        BOOST_TEST_REQUIRE(
            std::memcmp(model.values.data(), written.data(), written.size() * sizeof(float)) == 0,
            where);
        BOOST_TEST_REQUIRE(undo.size() == sites.size(), where);
        for (size_t i = 0; i < undo.size(); ++i) {
          BOOST_TEST_REQUIRE(undo[i].offset == sites[i], where);
          BOOST_TEST_REQUIRE(
              bits_of(undo[i].old_value) == bits_of(pristine.values[static_cast<size_t>(sites[i])]),
              where);
        }
        Perturber::restore(model, undo, fracsweep::UndoOffsets::distinct);
        BOOST_TEST_REQUIRE(std::memcmp(model.values.data(), pristine.values.data(),
                                       written.size() * sizeof(float)) == 0,
                           where);
      }
    }
  }
  omp_set_num_threads(threads_before);
}

BOOST_AUTO_TEST_CASE(large_k_is_visited_in_offset_order_unless_a_record_is_asked_for) {
  // automatic: by rank below n_scope / offset_order_from sites, in offset order from there on,
  // and by rank whenever the sites are recorded (the record is in site rank order).
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stats");
  const StrategySpec strategy = parse("gaussian sigma=0.1");
  const int64_t n = perturber.scope_size(strategy.scope);
  const int64_t from = (n + Perturber::offset_order_from - 1) / Perturber::offset_order_from;
  const auto undo_offsets = [&](int64_t k, bool recorded) {
    std::vector<Touched> undo;
    std::vector<SiteRecord> record;
    perturber.apply(model, strategy, k, 4, undo, recorded ? &record : nullptr);
    Perturber::restore(model, undo, fracsweep::UndoOffsets::distinct);
    std::vector<int64_t> offsets;  // (k)
    for (const Touched& site : undo) offsets.push_back(site.offset);
    return offsets;
  };
  BOOST_TEST(undo_offsets(from - 1, false) == perturber.select_sites(strategy, from - 1, 4));
  const std::vector<int64_t> visited = undo_offsets(from, false);  // (from)
  BOOST_TEST(std::is_sorted(visited.begin(), visited.end()));
  BOOST_TEST(visited != perturber.select_sites(strategy, from, 4));
  BOOST_TEST(undo_offsets(from, true) == perturber.select_sites(strategy, from, 4));
}

BOOST_AUTO_TEST_CASE(sites_are_k_distinct_in_scope_offsets) {
  Model model = named_model();
  Perturber perturber(model, job_seed, "toy");
  for (const std::string scope_text :
       {"", " include=layers.*.attn.*", " include=layers.* exclude=layers.1.*",
        " include=norm_final"}) {
    const StrategySpec strategy = parse("zero" + scope_text);
    const int64_t n = perturber.scope_size(strategy.scope);
    std::set<int64_t> all_in_scope;
    for (const TensorInfo& t : model.tensors) {
      if (!fracsweep::in_scope(strategy.scope, t)) continue;
      for (int64_t i = 0; i < t.count; ++i) all_in_scope.insert(t.offset + i);
    }
    BOOST_TEST_REQUIRE(static_cast<int64_t>(all_in_scope.size()) == n);
    for (int64_t seed : {0, 1, 99}) {
      for (int64_t k : {int64_t{0}, int64_t{1}, n / 2, n}) {
        const std::vector<int64_t> sites = perturber.select_sites(strategy, k, seed);  // (k)
        BOOST_TEST_REQUIRE(static_cast<int64_t>(sites.size()) == k);
        const std::set<int64_t> unique(sites.begin(), sites.end());
        BOOST_TEST(static_cast<int64_t>(unique.size()) == k,
                   "duplicates in " << strategy.canonical());
        for (int64_t site : sites) {
          BOOST_TEST(all_in_scope.count(site) == 1u,
                     "site " << site << " outside " << strategy.canonical());
        }
        if (k == n) BOOST_TEST((unique == all_in_scope));
      }
    }
  }
  BOOST_CHECK_THROW(perturber.select_sites(parse("zero include=norm_final"), 4, 0),
                    fracsweep::RunError);
}

BOOST_AUTO_TEST_CASE(sites_nest_across_k_and_differ_across_seeds) {
  Model model = named_model();
  Perturber perturber(model, job_seed, "toy");
  const StrategySpec strategy = parse("signflip include=layers.*");
  const std::vector<int64_t> largest = perturber.select_sites(strategy, 30, 4);
  for (int64_t k : {1, 5, 17, 29}) {
    const std::vector<int64_t> smaller = perturber.select_sites(strategy, k, 4);
    BOOST_TEST(std::equal(smaller.begin(), smaller.end(), largest.begin()), "k = " << k);
  }
  BOOST_TEST(perturber.select_sites(strategy, 10, 5) != perturber.select_sites(strategy, 10, 4));
  BOOST_TEST(perturber.select_sites(strategy, 10, -4) != perturber.select_sites(strategy, 10, 4));
  // Another job seed or model name is another stream.
  Perturber other_job(model, job_seed + 1, "toy"), other_name(model, job_seed, "toy2");
  BOOST_TEST(other_job.select_sites(strategy, 10, 4) != perturber.select_sites(strategy, 10, 4));
  BOOST_TEST(other_name.select_sites(strategy, 10, 4) != perturber.select_sites(strategy, 10, 4));
}

BOOST_AUTO_TEST_CASE(strategies_with_one_scope_and_seed_share_sites) {
  // Common random numbers: the site stream is keyed by scope and seed, not by the strategy.
  Model model = named_model();
  Perturber perturber(model, job_seed, "toy");
  const std::vector<std::string> texts = {"zero",
                                          "signflip",
                                          "bitflip",
                                          "bitflip bits=mantissa",
                                          "gaussian sigma=0.1",
                                          "gaussian sigma=2 relative=std",
                                          "scale factor=3",
                                          "random-value"};
  for (const std::string scope_text : {"", " include=layers.*"}) {
    std::vector<int64_t> first;
    for (const std::string& text : texts) {
      std::vector<Touched> undo;
      std::vector<SiteRecord> record;
      perturber.apply(model, parse(text + scope_text), 12, 8, undo, &record);
      Perturber::restore(model, undo);
      if (first.empty()) first = offsets_of(record);
      BOOST_TEST(offsets_of(record) == first, text + scope_text);
    }
  }
}

// --- values written -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(zero_signflip_and_scale_write_exact_values) {
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stat");
  const int64_t n = model.n_parameters();
  for (const auto& site : apply_recorded(model, perturber, "zero", n, 1)) {
    BOOST_TEST_REQUIRE(bits_of(site.new_value) == 0u);  // +0.0
  }
  model = statistical_model();
  for (const auto& site : apply_recorded(model, perturber, "signflip", n, 1)) {
    BOOST_TEST_REQUIRE((bits_of(site.new_value) ^ bits_of(site.old_value)) == 0x80000000u);
  }
  model = statistical_model();
  for (const auto& site : apply_recorded(model, perturber, "scale factor=-2", n, 1)) {
    if (std::isnan(site.old_value)) {
      BOOST_TEST_REQUIRE(std::isnan(site.new_value));
    } else {
      BOOST_TEST_REQUIRE(site.new_value == -2.0f * site.old_value);  // exact in binary32
    }
  }
  model = statistical_model();
  for (const auto& site : apply_recorded(model, perturber, "scale factor=0.3", 500, 1)) {
    BOOST_TEST_REQUIRE(site.new_value ==
                       static_cast<float>(static_cast<double>(site.old_value) * 0.3));
  }
}

BOOST_AUTO_TEST_CASE(bitflips_change_exactly_one_bit_of_the_right_class) {
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stat");
  const int64_t n = model.n_parameters();
  // Fixed bits.
  for (const auto& [text, bit] :
       std::vector<std::pair<std::string, int>>{{"bitflip bits=sign", 31},
                                                {"bitflip bits=exponent-msb", 30},
                                                {"bitflip bits=0", 0},
                                                {"bitflip bits=22", 22},
                                                {"bitflip bits=23", 23}}) {
    for (const auto& site : apply_recorded(model, perturber, text, 300, 2)) {
      BOOST_TEST_REQUIRE(flipped_bit(site) == bit, text);
    }
    model = statistical_model();
  }
  // Random bits of a class: each site flips one bit of the class, uniformly over the class.
  // Thresholds are the chi-square 1e-4 upper quantiles for df = class size - 1.
  struct BitClassCase {
    std::string text;
    int lowest, highest;
    double critical;
  };
  for (const BitClassCase& c : {BitClassCase{"bitflip bits=exponent", 23, 30, 29.88},
                                BitClassCase{"bitflip bits=mantissa", 0, 22, 55.52},
                                BitClassCase{"bitflip", 0, 31, 69.11}}) {
    std::vector<int64_t> counts(static_cast<size_t>(c.highest - c.lowest + 1), 0);  // per bit
    for (const auto& site : apply_recorded(model, perturber, c.text, n, 3)) {
      const int bit = flipped_bit(site);
      BOOST_TEST_REQUIRE((bit >= c.lowest && bit <= c.highest), c.text << ": flipped bit " << bit);
      ++counts[static_cast<size_t>(bit - c.lowest)];
    }
    BOOST_TEST(chi_square_uniform(counts) < c.critical, c.text);
    model = statistical_model();
  }
}

BOOST_AUTO_TEST_CASE(gaussian_noise_is_scaled_as_documented) {
  const Model pristine = statistical_model();
  Model model = pristine;
  Perturber perturber(model, job_seed, "stat");
  // Population std of each tensor's finite values, computed here.
  std::map<std::string, double> tensor_std;
  for (const TensorInfo& t : pristine.tensors) {
    std::vector<double> finite;
    for (int64_t i = 0; i < t.count; ++i) {
      const float w = pristine.values[static_cast<size_t>(t.offset + i)];
      if (std::isfinite(w)) finite.push_back(w);
    }
    tensor_std[t.name] = std::sqrt(mean_and_variance(finite).second);
  }
  const int64_t k = 10000;
  // sigma = 0.1 in every mode; the noise scale per site given the tensor's std.
  const std::vector<std::pair<std::string, double (*)(const SiteRecord&, double)>> modes = {
      {"abs", [](const SiteRecord& s,
                 double) { return 0.1 * std::fabs(static_cast<double>(s.old_value)); }},
      {"std", [](const SiteRecord&, double tensor_sd) { return 0.1 * tensor_sd; }},
      {"absolute", [](const SiteRecord&, double) { return 0.1; }}};
  for (const auto& [relative, scale_of] : modes) {
    model = pristine;
    std::map<std::string, std::vector<double>> z_by_tensor;  // standardised noise per tensor
    const std::string text = "gaussian sigma=0.1 relative=" + relative + " include=small,large";
    for (const auto& site : apply_recorded(model, perturber, text, k, 11)) {
      const std::string& tensor = tensor_at(pristine, site.offset).name;
      const double delta = static_cast<double>(site.new_value) - site.old_value;
      z_by_tensor[tensor].push_back(delta / scale_of(site, tensor_std[tensor]));
    }
    for (const auto& [tensor, z] : z_by_tensor) {
      BOOST_TEST_REQUIRE(z.size() > 4000u);
      const auto [mean, variance] = mean_and_variance(z);
      // ~5000 draws per tensor: se(mean) 0.014, se(variance) 0.02 (plus float rounding of
      // the written value, negligible at these scales); 5-6 se.
      BOOST_TEST(std::fabs(mean) < 0.08, relative << " " << tensor << " mean " << mean);
      BOOST_TEST(std::fabs(variance - 1.0) < 0.12,
                 relative << " " << tensor << " var " << variance);
    }
  }
  // "odd" holds NaN and +-Inf: its std is that of its finite values, so finite weights stay
  // finite and move by at most a few std.
  model = pristine;
  const double odd_std = tensor_std["odd"];
  BOOST_TEST_REQUIRE(odd_std > 1.0);
  for (const auto& site :
       apply_recorded(model, perturber, "gaussian sigma=0.1 relative=std include=odd", 8, 2)) {
    if (!std::isfinite(site.old_value)) continue;
    BOOST_TEST(std::isfinite(site.new_value));
    BOOST_TEST(std::fabs(static_cast<double>(site.new_value) - site.old_value) < 0.1 * odd_std * 6);
  }
}

BOOST_AUTO_TEST_CASE(random_value_lies_within_the_finite_range_of_its_tensor) {
  const Model pristine = statistical_model();
  Model model = pristine;
  Perturber perturber(model, job_seed, "stat");
  std::map<std::string, std::vector<float>> written;  // new values per tensor
  for (const auto& site :
       apply_recorded(model, perturber, "random-value", model.n_parameters(), 4)) {
    written[tensor_at(pristine, site.offset).name].push_back(site.new_value);
  }
  // "odd" holds NaN and +-Inf: its range is that of its finite values, [-2, 3].
  for (float value : written["odd"]) BOOST_TEST((value >= -2.0f && value <= 3.0f), value);
  for (const std::string tensor : {"small", "large"}) {
    const TensorInfo& t = pristine.tensor(tensor);
    const auto [lowest, highest] = std::minmax_element(
        pristine.values.begin() + t.offset, pristine.values.begin() + t.offset + t.count);
    const auto [written_low, written_high] =
        std::minmax_element(written[tensor].begin(), written[tensor].end());
    BOOST_TEST(*written_low >= *lowest);
    BOOST_TEST(*written_high <= *highest);
    // 6000 uniform draws cover the range to within ~0.1% at each end.
    const double range = static_cast<double>(*highest) - *lowest;
    BOOST_TEST(*written_low < *lowest + 0.01 * range, tensor);
    BOOST_TEST(*written_high > *highest - 0.01 * range, tensor);
    double sum = 0;
    for (float value : written[tensor]) sum += value;
    const double midpoint = (static_cast<double>(*lowest) + *highest) / 2;
    BOOST_TEST(
        std::fabs(sum / static_cast<double>(written[tensor].size()) - midpoint) < 0.03 * range,
        tensor);
  }
}

BOOST_AUTO_TEST_CASE(sites_map_to_offsets_across_tiny_and_empty_tensors) {
  // Site rank i is permute(i) of the documented permutation, read as an in-scope index and
  // mapped by walking the tensors here: tensors of 0, 1 and a few values sit between large
  // ones, so many of the lookup's buckets hold several tensor starts.
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  int64_t n = 0;
  for (int64_t count : {1, 5000, 0, 1, 1, 3, 7000, 0, 2, 40, 1, 9000}) {
    tensors.emplace_back("t" + std::to_string(tensors.size()),
                         std::vector<float>(static_cast<size_t>(count), 1.0f));
    n += count;
  }
  Model model = make_model(tensors);
  Perturber perturber(model, job_seed, "tiny-tensors");
  const StrategySpec strategy = parse("zero exclude=t6");  // a scope with a gap
  const int64_t n_scope = perturber.scope_size(strategy.scope);
  BOOST_TEST_REQUIRE(n_scope == n - 7000);
  const std::vector<int64_t> sites = perturber.select_sites(strategy, n_scope, 4);  // (n_scope)
  const fracsweep::KeyedPermutation permutation(
      fracsweep::KeyedRng(fracsweep::key_from_text(perturber.sites_key_text(strategy.scope, 4))),
      n_scope, 0);
  for (int64_t rank = 0; rank < n_scope; ++rank) {
    int64_t index = permutation(rank), expected = -1;
    for (const TensorInfo& t : model.tensors) {
      if (t.name == "t6") continue;
      if (index < t.count) {
        expected = t.offset + index;
        break;
      }
      index -= t.count;
    }
    BOOST_TEST_REQUIRE(sites[static_cast<size_t>(rank)] == expected, "rank " << rank);
  }
}

BOOST_AUTO_TEST_CASE(values_match_the_scalar_stream_over_many_chunks) {
  // apply draws each chunk's values stream in lockstep (KeyedRng::u64_at); over every
  // parameter of a 12008-value model (three chunks) the values must be the scalar stream's:
  // below(32, i, 1) for bitflip, normal(i, 1) for gaussian, uniform01(i, 1) for random-value.
  const Model pristine = statistical_model();
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stat");
  const int64_t n = perturber.scope_size(Scope{});
  const auto stream = [&](const std::string& text) {
    return fracsweep::KeyedRng(fracsweep::key_from_text(perturber.values_key_text(parse(text), 9)));
  };
  const auto bits = apply_recorded(model, perturber, "bitflip", n, 9);
  const fracsweep::KeyedRng bit_stream = stream("bitflip");
  for (size_t i = 0; i < bits.size(); ++i) {
    BOOST_TEST_REQUIRE(flipped_bit(bits[i]) == static_cast<int>(bit_stream.below(32, i, 1)));
  }
  model = statistical_model();
  const auto noise = apply_recorded(model, perturber, "gaussian sigma=0.5 relative=abs", n, 9);
  const fracsweep::KeyedRng noise_stream = stream("gaussian sigma=0.5 relative=abs");
  for (size_t i = 0; i < noise.size(); ++i) {
    const double old = noise[i].old_value;
    BOOST_TEST_REQUIRE(
        bits_of(noise[i].new_value) ==
        bits_of(static_cast<float>(old + 0.5 * std::fabs(old) * noise_stream.normal(i, 1))));
  }
  model = statistical_model();
  const auto uniform = apply_recorded(model, perturber, "random-value", n, 9);
  const fracsweep::KeyedRng uniform_stream = stream("random-value");
  std::map<std::string, std::pair<float, float>> range;  // finite min and max per tensor
  for (const TensorInfo& t : pristine.tensors) {
    float low = inf_f, high = -inf_f;
    for (int64_t o = t.offset; o < t.offset + t.count; ++o) {
      const float v = pristine.values[static_cast<size_t>(o)];
      if (!std::isfinite(v)) continue;
      low = std::min(low, v);
      high = std::max(high, v);
    }
    range[t.name] = {low, high};
  }
  for (size_t i = 0; i < uniform.size(); ++i) {
    const auto [low, high] = range.at(tensor_at(pristine, uniform[i].offset).name);
    BOOST_TEST_REQUIRE(bits_of(uniform[i].new_value) ==
                       bits_of(static_cast<float>(low + uniform_stream.uniform01(i, 1) *
                                                            (static_cast<double>(high) - low))));
  }
}

BOOST_AUTO_TEST_CASE(values_follow_the_documented_value_stream) {
  // Value at site rank i comes from stream V = key_from_text(values key text), counter i,
  // lane 1 — the recipe the Python analysis mirrors.
  Model model = statistical_model();
  Perturber perturber(model, job_seed, "stat");
  const StrategySpec bitflip = parse("bitflip");
  const KeyedRng bit_stream(fracsweep::key_from_text(perturber.values_key_text(bitflip, 6)));
  const auto bit_record = apply_recorded(model, perturber, "bitflip", 200, 6);
  for (size_t i = 0; i < bit_record.size(); ++i) {
    BOOST_TEST_REQUIRE(flipped_bit(bit_record[i]) == static_cast<int>(bit_stream.below(32, i, 1)));
  }
  model = statistical_model();
  const StrategySpec gaussian = parse("gaussian sigma=0.5 relative=abs");
  const KeyedRng noise(fracsweep::key_from_text(perturber.values_key_text(gaussian, 6)));
  const auto noise_record =
      apply_recorded(model, perturber, "gaussian sigma=0.5 relative=abs", 200, 6);
  for (size_t i = 0; i < noise_record.size(); ++i) {
    const double old = noise_record[i].old_value;
    BOOST_TEST_REQUIRE(noise_record[i].new_value ==
                       static_cast<float>(old + 0.5 * std::fabs(old) * noise.normal(i, 1)));
  }
}

// --- magnitude ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(magnitude_orders_by_abs_with_nan_first_and_ties_by_offset) {
  // offsets: a = 0..4, b = 5..9. Largest first: the NaNs (2, 7), -Inf (4), the |3| tie
  // (1 before 6), the |2| tie (3 before 5), 1 (0), 0.5 (9), -0 (8).
  Model model = make_model(
      {{"a", {1.0f, -3.0f, nan_f, 2.0f, -inf_f}}, {"b", {-2.0f, 3.0f, nan_f, -0.0f, 0.5f}}});
  Perturber perturber(model, job_seed, "toy");
  const std::vector<int64_t> expected = {2, 7, 4, 1, 6, 3, 5, 0, 9, 8};
  for (int64_t seed : {0, 1, 12345}) {
    BOOST_TEST(perturber.select_sites(parse("magnitude"), 10, seed) == expected);
    BOOST_TEST(perturber.select_sites(parse("magnitude then=signflip"), 3, seed) ==
               (std::vector<int64_t>{2, 7, 4}));
  }
  BOOST_TEST(perturber.select_sites(parse("magnitude include=b"), 5, 0) ==
             (std::vector<int64_t>{7, 6, 5, 9, 8}));
  BOOST_TEST(perturber.select_sites(parse("magnitude include=a"), 2, 0) ==
             (std::vector<int64_t>{2, 4}));
}

BOOST_AUTO_TEST_CASE(magnitude_actions_write_exact_values) {
  const Model pristine = make_model({{"a", {1.0f, -3.0f, 0.25f, 2.0f}}, {"b", {-0.5f, 4.0f}}});
  Model model = pristine;
  Perturber perturber(model, job_seed, "toy");
  // Sites, largest |w| first: 5 (4), 1 (-3), 3 (2).
  const std::vector<int64_t> top3 = {5, 1, 3};
  const std::vector<std::pair<std::string, uint32_t>> flips = {
      {"magnitude then=bitflip", 1u << 30},
      {"magnitude then=bitflip bits=sign", 1u << 31},
      {"magnitude then=bitflip bits=4", 1u << 4}};
  for (const auto& [text, mask] : flips) {
    model = pristine;
    const auto record = apply_recorded(model, perturber, text, 3, 0);
    BOOST_TEST(offsets_of(record) == top3, text);
    for (const auto& site : record) {
      BOOST_TEST((bits_of(site.new_value) ^ bits_of(site.old_value)) == mask, text);
    }
  }
  model = pristine;
  apply_recorded(model, perturber, "magnitude", 3, 9);
  BOOST_TEST(model.values == (std::vector<float>{1.0f, 0.0f, 0.25f, 0.0f, -0.5f, 0.0f}));
  model = pristine;
  apply_recorded(model, perturber, "magnitude then=signflip", 2, 9);
  BOOST_TEST(model.values == (std::vector<float>{1.0f, 3.0f, 0.25f, 2.0f, -0.5f, -4.0f}));
}

// --- restore and record -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(restore_is_bitwise_exact_and_record_matches_the_change) {
  // Special values: NaN payloads (quiet, signalling, negative), signed zeros, subnormals,
  // infinities and the largest finite float, among ordinary weights.
  std::vector<float> specials = {float_of_bits(0x7fc12345),
                                 float_of_bits(0x7f800001),
                                 float_of_bits(0xffc00001),
                                 0.0f,
                                 -0.0f,
                                 float_of_bits(0x00000001),
                                 float_of_bits(0x80000010),
                                 inf_f,
                                 -inf_f,
                                 std::numeric_limits<float>::max()};
  std::vector<float> ordinary;  // (40)
  for (int i = 0; i < 40; ++i) ordinary.push_back(0.37f * static_cast<float>(i - 20));
  const Model pristine = make_model({{"tok_embeddings", ordinary},
                                     {"layers.0.attn.wq", specials},
                                     {"norm_final", {1.0f, -1.0f, 0.0f}}});
  Model model = pristine;
  Perturber perturber(model, job_seed, "toy");
  const auto bytes = model.values.size() * sizeof(float);
  const std::vector<std::string> texts = {"zero",
                                          "signflip",
                                          "scale factor=1.5",
                                          "scale factor=0",
                                          "bitflip",
                                          "bitflip bits=sign",
                                          "bitflip bits=exponent",
                                          "bitflip bits=exponent-msb",
                                          "bitflip bits=mantissa",
                                          "bitflip bits=7",
                                          "gaussian sigma=0.1",
                                          "gaussian sigma=0.3 relative=std",
                                          "gaussian sigma=2 relative=absolute",
                                          "random-value",
                                          "magnitude",
                                          "magnitude then=signflip",
                                          "magnitude then=bitflip",
                                          "magnitude then=bitflip bits=sign",
                                          "zero include=layers.*",
                                          "bitflip exclude=tok_*"};
  int64_t trials = 0;
  for (const std::string& text : texts) {
    const StrategySpec strategy = parse(text);
    const int64_t n = perturber.scope_size(strategy.scope);
    for (int64_t seed = 0; seed < 25; ++seed) {
      for (int64_t k : {int64_t{1}, n / 3, n}) {
        std::vector<Touched> undo;
        std::vector<SiteRecord> record;
        perturber.apply(model, strategy, k, seed, undo, &record);
        const std::vector<float> after(model.values.begin(), model.values.end());  // (n_parameters)
        BOOST_TEST_REQUIRE(static_cast<int64_t>(record.size()) == k);
        BOOST_TEST_REQUIRE(undo.size() == record.size());
        std::set<int64_t> touched;
        for (size_t i = 0; i < record.size(); ++i) {
          const auto offset = static_cast<size_t>(record[i].offset);
          touched.insert(record[i].offset);
          BOOST_TEST_REQUIRE(undo[i].offset == record[i].offset);
          BOOST_TEST_REQUIRE(bits_of(undo[i].old_value) == bits_of(pristine.values[offset]));
          BOOST_TEST_REQUIRE(bits_of(record[i].old_value) == bits_of(pristine.values[offset]));
          BOOST_TEST_REQUIRE(bits_of(record[i].new_value) == bits_of(after[offset]));
        }
        for (size_t i = 0; i < after.size(); ++i) {
          if (touched.count(static_cast<int64_t>(i)) == 0) {
            BOOST_TEST_REQUIRE(bits_of(after[i]) == bits_of(pristine.values[i]),
                               text << ": untouched offset " << i << " changed");
          }
        }
        Perturber::restore(model, undo);
        BOOST_TEST_REQUIRE(std::memcmp(model.values.data(), pristine.values.data(), bytes) == 0,
                           text << " seed " << seed << " k " << k << ": restore not bitwise");
        ++trials;
      }
    }
  }
  BOOST_TEST(trials == static_cast<int64_t>(texts.size()) * 25 * 3);
}

BOOST_AUTO_TEST_CASE(parallel_restore_of_distinct_offsets_equals_the_serial_one) {
  // 100003 values, every one logged once in a shuffled order, restored at 3 threads.
  std::vector<float> values(100003);  // (100003)
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f - 7.0f;
  Model model = make_model({{"w", values}});
  std::vector<int64_t> order(values.size());  // (100003) a shuffled 0, 1, ...
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(5));
  std::vector<Touched> undo;
  for (int64_t offset : order) {
    undo.push_back({offset, model.values[static_cast<size_t>(offset)]});
    model.values[static_cast<size_t>(offset)] = nan_f;
  }
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(3);
  Perturber::restore(model, undo, fracsweep::UndoOffsets::distinct);
  omp_set_num_threads(threads_before);
  BOOST_TEST(std::memcmp(model.values.data(), values.data(), values.size() * sizeof(float)) == 0);
}

BOOST_AUTO_TEST_CASE(restore_of_repeated_offsets_writes_the_value_before_the_first_change) {
  // A bfa-like log: offset 2 changed three times, offset 0 twice.
  Model model = make_model({{"w", {1.0f, 2.0f, 3.0f, 4.0f}}});
  std::vector<Touched> undo = {{2, 3.0f}, {0, 1.0f}, {2, -3.0f}, {0, 5.0f}, {2, 8.0f}};
  model.values[0] = 6.0f;
  model.values[2] = 9.0f;
  Perturber::restore(model, undo);  // UndoOffsets::may_repeat
  BOOST_TEST((model.values == std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
}

BOOST_AUTO_TEST_CASE(apply_refuses_a_model_it_was_not_built_for) {
  Model model = named_model(), other = named_model();
  Perturber perturber(model, job_seed, "toy");
  std::vector<Touched> undo;
  BOOST_CHECK_THROW(perturber.apply(other, parse("zero"), 1, 0, undo), fracsweep::RunError);
}

// --- stories260K: expected.json's targeted oracles ---------------------------------------

BOOST_AUTO_TEST_CASE(stories260k_largest_weights_match_targeted_oracles,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const fracsweep::test::Fixture fixture;
  Model model =
      fracsweep::load_llama2c(fracsweep::test::shared_file("models/stories260K/stories260K.bin"));
  Perturber perturber(model, 0, "stories260K");

  // Over all parameters: rms_final[5] (our norm_final index 5).
  const std::vector<int64_t> top_all = perturber.select_sites(parse("magnitude"), 1, 0);
  BOOST_TEST_REQUIRE(top_all.size() == 1u);
  BOOST_TEST(top_all[0] == model.tensor("norm_final").offset + 5);
  BOOST_TEST(model.values[static_cast<size_t>(top_all[0])] == 4.425094127655029f);
  BOOST_TEST(fixture.number("targeted_oracles.zero_top1_all.first_site.value") ==
             4.425094127655029);

  // Over the projection matrices: wq[3, 54, 36].
  const StrategySpec matrices = parse("magnitude include=layers.*.attn.w*,layers.*.ffn.w*");
  BOOST_TEST(perturber.scope_size(matrices.scope) == 226560);
  BOOST_TEST(perturber.scope_size(matrices.scope) == fixture.number("model.n_matrix_weights"));
  const std::vector<int64_t> top_matrix = perturber.select_sites(matrices, 1, 0);
  BOOST_TEST_REQUIRE(top_matrix.size() == 1u);
  BOOST_TEST(top_matrix[0] == model.tensor("layers.3.attn.wq").offset + 54 * 64 + 36);
  BOOST_TEST(model.values[static_cast<size_t>(top_matrix[0])] == 1.8515630960464478f);
  BOOST_TEST(
      fixture.text("targeted_oracles.zero_top1_matrices.first_site.index_in_stacked_tensor.0") ==
      "3");
  BOOST_TEST(
      fixture.text("targeted_oracles.zero_top1_matrices.first_site.index_in_stacked_tensor.1") ==
      "54");
  BOOST_TEST(
      fixture.text("targeted_oracles.zero_top1_matrices.first_site.index_in_stacked_tensor.2") ==
      "36");

  // The 1% top set (2266 sites, as in zero_top1pct_matrices) is sorted by |w| descending and
  // holds the 2266 largest |w| of the matrices (checked against a plain sort of them).
  const int64_t top_count = 2266;
  BOOST_TEST(fixture.number("targeted_oracles.zero_top1pct_matrices.sites") == top_count);
  const std::vector<int64_t> top_percent = perturber.select_sites(matrices, top_count, 0);
  BOOST_TEST(top_percent.front() == top_matrix[0]);
  for (size_t i = 1; i < top_percent.size(); ++i) {
    BOOST_TEST_REQUIRE(std::fabs(model.values[static_cast<size_t>(top_percent[i - 1])]) >=
                       std::fabs(model.values[static_cast<size_t>(top_percent[i])]));
  }
  std::vector<float> matrix_magnitudes;  // (226560) |w| of every projection weight
  for (const TensorInfo& t : model.tensors) {
    if (!fracsweep::in_scope(matrices.scope, t)) continue;
    for (int64_t i = 0; i < t.count; ++i) {
      matrix_magnitudes.push_back(std::fabs(model.values[static_cast<size_t>(t.offset + i)]));
    }
  }
  std::sort(matrix_magnitudes.begin(), matrix_magnitudes.end(), std::greater<>());
  BOOST_TEST(std::fabs(model.values[static_cast<size_t>(top_percent.back())]) ==
             matrix_magnitudes[top_count - 1]);

  // Zeroing it touches exactly that weight; restore brings the model back bitwise.
  const std::vector<float> pristine(model.values.begin(), model.values.end());  // (n_parameters)
  std::vector<Touched> undo;
  perturber.apply(model, parse("magnitude include=layers.*.attn.w*,layers.*.ffn.w*"), 1, 0, undo);
  BOOST_TEST(model.values[static_cast<size_t>(top_matrix[0])] == 0.0f);
  Perturber::restore(model, undo);
  BOOST_TEST(std::memcmp(model.values.data(), pristine.data(), pristine.size() * sizeof(float)) ==
             0);
}
