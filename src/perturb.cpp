#include "fracsweep/perturb.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <sstream>

#include "fracsweep/error.hpp"
#include "fracsweep/safetensors.hpp"

namespace fracsweep {

namespace {

// '*' matches any run of characters (dots included), '?' exactly one; the rest is literal.
bool glob_match(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string join(const std::vector<std::string>& items, char separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  return out;
}

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(separator, start), text.size());
    if (end > start) parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

// Shortest text that reads back as the same double ("0.1", "1e-05").
std::string number_text(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

const char* bit_class_text(BitClass bits) {
  switch (bits) {
    case BitClass::any: return "any";
    case BitClass::sign: return "sign";
    case BitClass::exponent: return "exponent";
    case BitClass::exponent_msb: return "exponent-msb";
    case BitClass::mantissa: return "mantissa";
    case BitClass::explicit_bit: return "explicit";
  }
  return "?";
}

std::string bits_text(const StrategySpec& s) {
  return s.bits == BitClass::explicit_bit ? std::to_string(s.bit) : bit_class_text(s.bits);
}

double parse_number(const std::string& text, const std::string& key, const std::string& where) {
  double value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  check_input(result.ec == std::errc() && result.ptr == text.data() + text.size() &&
                  std::isfinite(value),
              where + ": strategy parameter " + key + " must be a finite number, found '" + text +
                  "'");
  return value;
}

// Parses a bit class or an explicit bit number 0..31.
void parse_bits(const std::string& text, const std::string& where, StrategySpec& s) {
  static const std::pair<const char*, BitClass> classes[] = {
      {"any", BitClass::any},           {"sign", BitClass::sign},
      {"exponent", BitClass::exponent}, {"exponent-msb", BitClass::exponent_msb},
      {"mantissa", BitClass::mantissa}};
  for (const auto& [name, bits] : classes) {
    if (text == name) {
      s.bits = bits;
      return;
    }
  }
  int bit = -1;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), bit);
  check_input(result.ec == std::errc() && result.ptr == text.data() + text.size() && bit >= 0 &&
                  bit <= 31,
              where + ": bits must be any, sign, exponent, exponent-msb, mantissa or a bit number "
                      "0..31, found '" + text + "'");
  s.bits = BitClass::explicit_bit;
  s.bit = bit;
}

}  // namespace

bool Scope::contains(std::string_view tensor_name) const {
  bool included = include.empty();
  for (const std::string& pattern : include) included = included || glob_match(pattern, tensor_name);
  if (!included) return false;
  for (const std::string& pattern : exclude) {
    if (glob_match(pattern, tensor_name)) return false;
  }
  return true;
}

std::string Scope::canonical() const {
  return "include=" + (include.empty() ? std::string("*") : join(include, ',')) +
         ";exclude=" + join(exclude, ',');
}

std::string StrategySpec::name() const {
  switch (kind) {
    case StrategyKind::zero: return "zero";
    case StrategyKind::gaussian: return "gaussian";
    case StrategyKind::signflip: return "signflip";
    case StrategyKind::bitflip: return "bitflip";
    case StrategyKind::random_value: return "random-value";
    case StrategyKind::scale: return "scale";
    case StrategyKind::magnitude: return "magnitude";
  }
  return "?";
}

std::string StrategySpec::canonical() const {
  std::string label = name();
  switch (kind) {
    case StrategyKind::gaussian: {
      static const char* relative_names[] = {"abs", "std", "absolute"};
      label += "(sigma=" + number_text(sigma) +
               ",relative=" + relative_names[static_cast<int>(relative_to)] + ")";
      break;
    }
    case StrategyKind::bitflip: label += "(bits=" + bits_text(*this) + ")"; break;
    case StrategyKind::scale: label += "(factor=" + number_text(factor) + ")"; break;
    case StrategyKind::magnitude: {
      static const char* action_names[] = {"zero", "signflip", "bitflip"};
      label += std::string("(then=") + action_names[static_cast<int>(action)];
      if (action == TargetAction::bitflip) label += ",bits=" + bits_text(*this);
      label += ")";
      break;
    }
    case StrategyKind::zero:
    case StrategyKind::signflip:
    case StrategyKind::random_value: break;
  }
  if (!scope.include.empty() || !scope.exclude.empty()) label += "[" + scope.canonical() + "]";
  return label;
}

StrategySpec parse_strategy(std::string_view text, const std::string& where) {
  std::vector<std::string> words;
  std::istringstream stream{std::string(text)};
  for (std::string word; stream >> word;) words.push_back(word);
  check_input(!words.empty(), where + ": empty strategy; expected a name such as zero, gaussian, "
                                      "signflip, bitflip, random-value, scale or magnitude");
  StrategySpec s;
  const std::string& name = words[0];
  static const std::pair<const char*, StrategyKind> kinds[] = {
      {"zero", StrategyKind::zero},         {"gaussian", StrategyKind::gaussian},
      {"signflip", StrategyKind::signflip}, {"bitflip", StrategyKind::bitflip},
      {"random-value", StrategyKind::random_value}, {"scale", StrategyKind::scale},
      {"magnitude", StrategyKind::magnitude}};
  bool known = false;
  for (const auto& [kind_name, kind] : kinds) {
    if (name == kind_name) {
      s.kind = kind;
      known = true;
    }
  }
  check_input(known, where + ": unknown strategy '" + name +
                         "'; expected zero, gaussian, signflip, bitflip, random-value, scale or "
                         "magnitude");

  bool has_sigma = false, has_factor = false, has_bits = false;
  for (size_t i = 1; i < words.size(); ++i) {
    const size_t eq = words[i].find('=');
    check_input(eq != std::string::npos && eq > 0,
                where + ": strategy '" + name + "': expected key=value, found '" + words[i] + "'");
    const std::string key = words[i].substr(0, eq), value = words[i].substr(eq + 1);
    auto allowed = [&](bool ok) {
      check_input(ok, where + ": strategy '" + name + "' takes no parameter '" + key + "'");
    };
    if (key == "include" || key == "exclude") {
      auto patterns = split(value, ',');
      check_input(!patterns.empty(), where + ": " + key + " needs at least one pattern");
      auto& target = key == "include" ? s.scope.include : s.scope.exclude;
      target.insert(target.end(), patterns.begin(), patterns.end());
    } else if (key == "sigma") {
      allowed(s.kind == StrategyKind::gaussian);
      s.sigma = parse_number(value, key, where);
      check_input(s.sigma > 0, where + ": gaussian sigma must be > 0, found " + value);
      has_sigma = true;
    } else if (key == "relative") {
      allowed(s.kind == StrategyKind::gaussian);
      if (value == "abs") s.relative_to = SigmaRelativeTo::abs;
      else if (value == "std") s.relative_to = SigmaRelativeTo::std;
      else if (value == "absolute") s.relative_to = SigmaRelativeTo::absolute;
      else throw InputError(where + ": gaussian relative must be abs, std or absolute, found '" +
                            value + "'");
    } else if (key == "factor") {
      allowed(s.kind == StrategyKind::scale);
      s.factor = parse_number(value, key, where);
      has_factor = true;
    } else if (key == "bits") {
      allowed(s.kind == StrategyKind::bitflip || s.kind == StrategyKind::magnitude);
      parse_bits(value, where, s);
      has_bits = true;
    } else if (key == "then") {
      allowed(s.kind == StrategyKind::magnitude);
      if (value == "zero") s.action = TargetAction::zero;
      else if (value == "signflip") s.action = TargetAction::signflip;
      else if (value == "bitflip") s.action = TargetAction::bitflip;
      else throw InputError(where + ": magnitude then must be zero, signflip or bitflip, found '" +
                            value + "'");
    } else {
      throw InputError(where + ": strategy '" + name + "': unknown parameter '" + key + "'");
    }
  }
  // Equivalent scopes get one label (and so one site stream): sorted, deduplicated, no "*".
  for (auto* patterns : {&s.scope.include, &s.scope.exclude}) {
    std::sort(patterns->begin(), patterns->end());
    patterns->erase(std::unique(patterns->begin(), patterns->end()), patterns->end());
  }
  if (std::find(s.scope.include.begin(), s.scope.include.end(), "*") != s.scope.include.end()) {
    s.scope.include.clear();
  }
  check_input(s.kind != StrategyKind::gaussian || has_sigma,
              where + ": gaussian needs sigma=<number>");
  check_input(s.kind != StrategyKind::scale || has_factor, where + ": scale needs factor=<number>");
  if (s.kind == StrategyKind::magnitude) {
    if (s.action == TargetAction::bitflip) {
      if (!has_bits) s.bits = BitClass::exponent_msb;
      check_input(s.bits == BitClass::sign || s.bits == BitClass::exponent_msb ||
                      s.bits == BitClass::explicit_bit,
                  where + ": magnitude then=bitflip is deterministic and needs one fixed bit: "
                          "bits=sign, exponent-msb or a bit number, found bits=" + bits_text(s));
    } else {
      check_input(!has_bits, where + ": bits is only valid with magnitude then=bitflip");
    }
  }
  return s;
}

float flip_bit(float value, int bit) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(value) ^ (uint32_t{1} << bit));
}

const char* stored_type_name(StoredType type) {
  switch (type) {
    case StoredType::f32: return "f32";
    case StoredType::f16: return "f16";
    case StoredType::bf16: return "bf16";
  }
  return "?";
}

int stored_bit_width(StoredType type) { return type == StoredType::f32 ? 32 : 16; }

float stored16_to_float(StoredType type, uint16_t bits) {
  if (type == StoredType::bf16) return std::bit_cast<float>(uint32_t{bits} << 16);
  const bool nan = (bits & 0x7C00u) == 0x7C00u && (bits & 0x3FFu) != 0;
  if (!nan) return half_to_float(bits);
  // NaN: the 10-bit payload moves to the top of the binary32 fraction unchanged (not quieted).
  return std::bit_cast<float>(uint32_t{bits & 0x8000u} << 16 | 0x7F800000u | uint32_t{bits & 0x3FFu} << 13);
}

uint16_t float_to_stored16(StoredType type, float widened) {
  const auto bits = std::bit_cast<uint32_t>(widened);
  if (type == StoredType::bf16) return static_cast<uint16_t>(bits >> 16);
  if (std::isnan(widened)) {
    return static_cast<uint16_t>((bits >> 16 & 0x8000u) | 0x7C00u | (bits >> 13 & 0x3FFu));
  }
  return float_to_half(widened);  // exact: a widened value is representable
}

uint16_t round_to_stored16(StoredType type, float value) {
  return type == StoredType::bf16 ? float_to_bf16(value) : float_to_half(value);
}

void check_strategy_fits(const StrategySpec& strategy, const std::vector<TensorInfo>& tensors,
                         const std::string& where) {
  const bool explicit_bit = strategy.bits == BitClass::explicit_bit &&
                            (strategy.kind == StrategyKind::bitflip ||
                             (strategy.kind == StrategyKind::magnitude && strategy.action == TargetAction::bitflip));
  if (!explicit_bit) return;
  for (const TensorInfo& t : tensors) {
    if (!strategy.scope.contains(t.name)) continue;
    check_input(strategy.bit < stored_bit_width(t.stored),
                where + ": bits=" + std::to_string(strategy.bit) + " is outside tensor '" + t.name +
                    "', stored as " + stored_type_name(t.stored) + " (bits 0.." +
                    std::to_string(stored_bit_width(t.stored) - 1) + ")");
  }
}

Perturber::Perturber(const Model& model, uint64_t job_seed, std::string model_name)
    : model_(model), job_seed_(job_seed), model_name_(std::move(model_name)) {
  stats_.reserve(model.tensors.size());
  for (const TensorInfo& t : model.tensors) {
    TensorStats st;
    double sum = 0, sum_sq = 0;
    int64_t finite = 0;
    bool first = true;
    for (int64_t i = 0; i < t.count; ++i) {
      const float w = model.values[static_cast<size_t>(t.offset + i)];
      if (!std::isfinite(w)) continue;
      st.min = first ? w : std::min(st.min, w);
      st.max = first ? w : std::max(st.max, w);
      first = false;
      sum += w;
      sum_sq += static_cast<double>(w) * w;
      ++finite;
    }
    if (finite > 0) {
      const double mean = sum / static_cast<double>(finite);
      st.std = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(finite) - mean * mean));
    }
    stats_.push_back(st);
  }
}

Perturber::ScopeIndex& Perturber::scope_index(const Scope& scope) {
  const std::string key = scope.canonical();
  auto it = scopes_.find(key);
  if (it != scopes_.end()) return it->second;
  ScopeIndex index;
  index.prefix.push_back(0);
  for (size_t t = 0; t < model_.tensors.size(); ++t) {
    if (!scope.contains(model_.tensors[t].name)) continue;
    index.tensor_ids.push_back(static_cast<int32_t>(t));
    index.prefix.push_back(index.prefix.back() + model_.tensors[t].count);
  }
  return scopes_.emplace(key, std::move(index)).first->second;
}

int64_t Perturber::scope_size(const Scope& scope) { return scope_index(scope).prefix.back(); }

std::string Perturber::scope_stored_types(const Scope& scope) {
  bool present[3] = {false, false, false};  // by StoredType
  for (int32_t t : scope_index(scope).tensor_ids) {
    present[static_cast<int>(model_.tensors[static_cast<size_t>(t)].stored)] = true;
  }
  std::string text;
  for (StoredType type : {StoredType::f32, StoredType::f16, StoredType::bf16}) {
    if (!present[static_cast<int>(type)]) continue;
    text += (text.empty() ? "" : "+") + std::string(stored_type_name(type));
  }
  return text;
}

std::string Perturber::sites_key_text(const Scope& scope, int64_t seed) const {
  return "fracsweep-sites-v1|job_seed=" + std::to_string(job_seed_) + "|model=" + model_name_ +
         "|scope=" + scope.canonical() + "|seed=" + std::to_string(seed);
}

std::string Perturber::values_key_text(const StrategySpec& strategy, int64_t seed) const {
  return "fracsweep-values-v1|job_seed=" + std::to_string(job_seed_) + "|model=" + model_name_ +
         "|strategy=" + strategy.canonical() + "|seed=" + std::to_string(seed);
}

std::vector<int64_t> Perturber::select_sites(const StrategySpec& strategy, int64_t k, int64_t seed) {
  ScopeIndex& index = scope_index(strategy.scope);
  const int64_t n_scope = index.prefix.back();
  check_invariant(k >= 0 && k <= n_scope, "site count outside the scope");
  if (strategy.kind == StrategyKind::magnitude) {
    if (index.by_magnitude.empty() && n_scope > 0) {
      index.by_magnitude.reserve(static_cast<size_t>(n_scope));
      for (int32_t t : index.tensor_ids) {
        const TensorInfo& info = model_.tensors[static_cast<size_t>(t)];
        for (int64_t i = 0; i < info.count; ++i) index.by_magnitude.push_back(info.offset + i);
      }
      const std::vector<float>& values = model_.values;
      std::sort(index.by_magnitude.begin(), index.by_magnitude.end(), [&](int64_t a, int64_t b) {
        const float wa = values[static_cast<size_t>(a)], wb = values[static_cast<size_t>(b)];
        const bool nan_a = std::isnan(wa), nan_b = std::isnan(wb);
        if (nan_a != nan_b) return nan_a;
        const float ma = nan_a ? 0.0f : std::fabs(wa), mb = nan_b ? 0.0f : std::fabs(wb);
        if (ma != mb) return ma > mb;
        return a < b;
      });
    }
    return {index.by_magnitude.begin(), index.by_magnitude.begin() + k};
  }
  const KeyedRng rng(key_from_text(sites_key_text(strategy.scope, seed)));
  std::vector<int64_t> sites = permutation_prefix(rng, n_scope, k, 0);
  for (int64_t& site : sites) {  // in-scope index -> offset in Model::values
    const auto slot = std::upper_bound(index.prefix.begin(), index.prefix.end(), site) -
                      index.prefix.begin() - 1;
    const TensorInfo& info =
        model_.tensors[static_cast<size_t>(index.tensor_ids[static_cast<size_t>(slot)])];
    site = info.offset + (site - index.prefix[static_cast<size_t>(slot)]);
  }
  return sites;
}

int32_t Perturber::tensor_of(int64_t offset) const {
  const auto it = std::upper_bound(model_.tensors.begin(), model_.tensors.end(), offset,
                                   [](int64_t o, const TensorInfo& t) { return o < t.offset; });
  return static_cast<int32_t>(it - model_.tensors.begin() - 1);
}

namespace {

// The 16-bit variant of a strategy's new value: bit flips act on the stored pattern, computed
// values are rounded to the stored type; the result is the exact widening.
float new_stored16_value(StoredType type, const StrategySpec& s, const KeyedRng& values_rng,
                         uint64_t i, float old, float float32_result) {
  const int exponent_low = type == StoredType::bf16 ? 7 : 10;  // also the mantissa width
  const uint16_t pattern = float_to_stored16(type, old);
  auto flip = [&](int bit) {
    check_invariant(bit >= 0 && bit < 16, "bit outside a 16-bit stored value");
    return stored16_to_float(type, static_cast<uint16_t>(pattern ^ (1u << bit)));
  };
  const bool flips = s.kind == StrategyKind::bitflip ||
                     (s.kind == StrategyKind::magnitude && s.action == TargetAction::bitflip);
  if (flips) {
    switch (s.bits) {
      case BitClass::sign: return flip(15);
      case BitClass::exponent_msb: return flip(14);
      case BitClass::explicit_bit: return flip(s.bit);
      case BitClass::exponent:
        return flip(exponent_low + static_cast<int>(values_rng.below(static_cast<uint64_t>(15 - exponent_low), i, 1)));
      case BitClass::mantissa:
        return flip(static_cast<int>(values_rng.below(static_cast<uint64_t>(exponent_low), i, 1)));
      case BitClass::any: return flip(static_cast<int>(values_rng.below(16, i, 1)));
    }
  }
  if (s.kind == StrategyKind::signflip ||
      (s.kind == StrategyKind::magnitude && s.action == TargetAction::signflip)) {
    return stored16_to_float(type, static_cast<uint16_t>(pattern ^ 0x8000u));
  }
  return stored16_to_float(type, round_to_stored16(type, float32_result));
}

}  // namespace

float Perturber::new_value(const StrategySpec& s, const KeyedRng& values_rng, int64_t site_rank,
                           int64_t offset, float old) const {
  const StoredType stored = model_.tensors[static_cast<size_t>(tensor_of(offset))].stored;
  if (stored == StoredType::f32) return new_float32_value(s, values_rng, site_rank, offset, old);
  // Bit flips draw from the stream themselves; the float32 result is only used by computed
  // strategies (and never draws for flips).
  const bool flips = s.kind == StrategyKind::bitflip ||
                     (s.kind == StrategyKind::magnitude && s.action == TargetAction::bitflip);
  const float float32_result = flips ? old : new_float32_value(s, values_rng, site_rank, offset, old);
  return new_stored16_value(stored, s, values_rng, static_cast<uint64_t>(site_rank), old, float32_result);
}

float Perturber::new_float32_value(const StrategySpec& s, const KeyedRng& values_rng, int64_t site_rank,
                                   int64_t offset, float old) const {
  const auto i = static_cast<uint64_t>(site_rank);
  auto flip = [&](BitClass bits) {
    switch (bits) {
      case BitClass::sign: return flip_bit(old, 31);
      case BitClass::exponent_msb: return flip_bit(old, 30);
      case BitClass::explicit_bit: return flip_bit(old, s.bit);
      case BitClass::exponent: return flip_bit(old, 23 + static_cast<int>(values_rng.below(8, i, 1)));
      case BitClass::mantissa: return flip_bit(old, static_cast<int>(values_rng.below(23, i, 1)));
      case BitClass::any: return flip_bit(old, static_cast<int>(values_rng.below(32, i, 1)));
    }
    return old;
  };
  switch (s.kind) {
    case StrategyKind::zero: return 0.0f;
    case StrategyKind::signflip: return -old;
    case StrategyKind::scale: return static_cast<float>(static_cast<double>(old) * s.factor);
    case StrategyKind::bitflip: return flip(s.bits);
    case StrategyKind::gaussian: {
      double scale = s.sigma;
      if (s.relative_to == SigmaRelativeTo::abs) scale *= std::fabs(static_cast<double>(old));
      if (s.relative_to == SigmaRelativeTo::std) {
        scale *= stats_[static_cast<size_t>(tensor_of(offset))].std;
      }
      return static_cast<float>(static_cast<double>(old) + scale * values_rng.normal(i, 1));
    }
    case StrategyKind::random_value: {
      const TensorStats& st = stats_[static_cast<size_t>(tensor_of(offset))];
      return static_cast<float>(st.min + values_rng.uniform01(i, 1) *
                                             (static_cast<double>(st.max) - st.min));
    }
    case StrategyKind::magnitude:
      switch (s.action) {
        case TargetAction::zero: return 0.0f;
        case TargetAction::signflip: return -old;
        case TargetAction::bitflip: return flip(s.bits);
      }
  }
  return old;
}

void Perturber::apply(Model& model, const StrategySpec& strategy, int64_t k, int64_t seed,
                      std::vector<Touched>& undo, std::vector<SiteRecord>* record) {
  check_invariant(&model == &model_, "Perturber applied to a model it was not built for");
  undo.clear();
  if (record) record->clear();
  const std::vector<int64_t> sites = select_sites(strategy, k, seed);
  const KeyedRng values_rng(key_from_text(values_key_text(strategy, seed)));
  undo.reserve(sites.size());
  for (size_t rank = 0; rank < sites.size(); ++rank) {
    float& w = model.values[static_cast<size_t>(sites[rank])];
    const float old = w;
    const float updated = new_value(strategy, values_rng, static_cast<int64_t>(rank), sites[rank], old);
    undo.push_back({sites[rank], old});
    w = updated;
    if (record) record->push_back({sites[rank], old, updated});
  }
}

void Perturber::restore(Model& model, const std::vector<Touched>& undo) {
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
    model.values[static_cast<size_t>(it->offset)] = it->old_value;
  }
}

}  // namespace fracsweep
