#include "fracsweep/config/strategy.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

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

const char* bit_class_text(BitClass bits) {
  switch (bits) {
    case BitClass::any:
      return "any";
    case BitClass::sign:
      return "sign";
    case BitClass::exponent:
      return "exponent";
    case BitClass::exponent_msb:
      return "exponent-msb";
    case BitClass::mantissa:
      return "mantissa";
    case BitClass::explicit_bit:
      return "explicit";
  }
  return "?";
}

std::string bits_text(const StrategySpec& s) {
  return s.bits == BitClass::explicit_bit ? std::to_string(s.bit) : bit_class_text(s.bits);
}

// A number the float32 working weights can use: finite and within float32's range (1e300
// would become inf once applied).
double parse_number(const std::string& text, const std::string& key, const std::string& where) {
  double value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  check_input(
      result.ec == std::errc() && result.ptr == text.data() + text.size() && std::isfinite(value),
      where + ": strategy parameter " + key + " must be a finite number, found '" + text + "'");
  check_input(std::fabs(value) <= std::numeric_limits<float>::max(),
              where + ": strategy parameter " + key + " = " + text +
                  " is outside the float32 range of the weights (|value| <= 3.4e38)");
  return value;
}

// Parses a bit class or an explicit bit number 0..31.
void parse_bits(const std::string& text, const std::string& where, StrategySpec& s) {
  static const std::pair<const char*, BitClass> classes[] = {
      {"any", BitClass::any},
      {"sign", BitClass::sign},
      {"exponent", BitClass::exponent},
      {"exponent-msb", BitClass::exponent_msb},
      {"mantissa", BitClass::mantissa}};
  for (const auto& [name, bits] : classes) {
    if (text == name) {
      s.bits = bits;
      return;
    }
  }
  int bit = -1;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), bit);
  check_input(
      result.ec == std::errc() && result.ptr == text.data() + text.size() && bit >= 0 && bit <= 31,
      where +
          ": bits must be any, sign, exponent, exponent-msb, mantissa or a bit number "
          "0..31, found '" +
          text + "'");
  s.bits = BitClass::explicit_bit;
  s.bit = bit;
}

// A whole number in [low, high] for parameter `key`.
int64_t parse_count(const std::string& text, const std::string& key, int64_t low, int64_t high,
                    const std::string& where) {
  int64_t value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  check_input(result.ec == std::errc() && result.ptr == text.data() + text.size() && value >= low &&
                  value <= high,
              where + ": strategy parameter " + key + " must be a whole number from " +
                  std::to_string(low) + " to " + std::to_string(high) + ", found '" + text + "'");
  return value;
}

// "nll", "agreement", "remove:KIND" or "implant:KIND" (KIND as in a probes file).
Objective parse_objective(const std::string& text, const std::string& where) {
  Objective objective;
  if (text == "nll") return objective;
  if (text == "agreement") {
    objective.kind = ObjectiveKind::agreement;
    return objective;
  }
  const size_t colon = text.find(':');
  const std::string head = text.substr(0, colon);
  const std::string kind = colon == std::string::npos ? "" : text.substr(colon + 1);
  check_input((head == "remove" || head == "implant") && !kind.empty() &&
                  kind.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789_") == std::string::npos,
              where +
                  ": objective must be nll, agreement, remove:KIND or implant:KIND (KIND a "
                  "probe kind of [eval] probes), found '" +
                  text + "'");
  objective.kind = head == "remove" ? ObjectiveKind::probe_remove : ObjectiveKind::probe_implant;
  objective.probe_kind = kind;
  return objective;
}

}  // namespace

bool Scope::contains(std::string_view tensor_name, bool is_buffer) const {
  // The default scope is an empty include list; include=* means the same (parse_strategy drops
  // it), so neither reaches a buffer.
  const bool explicit_include =
      !include.empty() && std::find(include.begin(), include.end(), "*") == include.end();
  return matches(tensor_name) && (!is_buffer || explicit_include);
}

bool Scope::matches(std::string_view tensor_name) const {
  bool included = include.empty();
  for (const std::string& pattern : include)
    included = included || glob_match(pattern, tensor_name);
  if (!included) return false;
  for (const std::string& pattern : exclude) {
    if (glob_match(pattern, tensor_name)) return false;
  }
  return true;
}

std::string Scope::canonical() const {
  return "include=" + (include.empty() ? std::string("*") : join(include, ",")) +
         ";exclude=" + join(exclude, ",");
}

std::string StrategySpec::name() const {
  switch (kind) {
    case StrategyKind::zero:
      return "zero";
    case StrategyKind::gaussian:
      return "gaussian";
    case StrategyKind::signflip:
      return "signflip";
    case StrategyKind::bitflip:
      return "bitflip";
    case StrategyKind::random_value:
      return "random-value";
    case StrategyKind::scale:
      return "scale";
    case StrategyKind::magnitude:
      return "magnitude";
    case StrategyKind::delta:
      return "delta";
    case StrategyKind::taylor:
      return "taylor";
    case StrategyKind::wanda:
      return "wanda";
    case StrategyKind::bfa:
      return "bfa";
    case StrategyKind::finetune:
      return "finetune";
  }
  return "?";
}

std::string Objective::canonical() const {
  switch (kind) {
    case ObjectiveKind::nll:
      return "nll";
    case ObjectiveKind::agreement:
      return "agreement";
    case ObjectiveKind::probe_remove:
      return "remove:" + probe_kind;
    case ObjectiveKind::probe_implant:
      return "implant:" + probe_kind;
  }
  return "?";
}

std::string StrategySpec::canonical() const {
  std::string label = name();
  switch (kind) {
    case StrategyKind::gaussian: {
      static const char* relative_names[] = {"abs", "std", "absolute"};
      label += "(sigma=" + shortest_number_text(sigma) +
               ",relative=" + relative_names[static_cast<int>(relative_to)] + ")";
      break;
    }
    case StrategyKind::bitflip:
      label += "(bits=" + bits_text(*this) + ")";
      break;
    case StrategyKind::scale:
      label += "(factor=" + shortest_number_text(factor) + ")";
      break;
    case StrategyKind::magnitude:
    case StrategyKind::taylor:
    case StrategyKind::wanda: {
      static const char* action_names[] = {"zero", "signflip", "bitflip"};
      label += std::string("(then=") + action_names[static_cast<int>(action)];
      if (action == TargetAction::bitflip) label += ",bits=" + bits_text(*this);
      if (kind == StrategyKind::taylor) label += ",objective=" + objective.canonical();
      label += ")";
      break;
    }
    case StrategyKind::bfa:
      label += "(bits=" + bits_text(*this) + ",candidates=" + std::to_string(candidates) +
               (limit > 0 ? ",limit=" + std::to_string(limit) : std::string()) +
               ",objective=" + objective.canonical() + ")";
      break;
    case StrategyKind::finetune:
      label += std::string("(sites=") + (sites == FinetuneSites::taylor ? "taylor" : "random") +
               ",steps=" + std::to_string(steps) + ",lr=" + shortest_number_text(lr) +
               ",objective=" + objective.canonical() + ")";
      break;
    case StrategyKind::delta:
      label += "(from=" + from_model +
               ",order=" + (order == DeltaOrder::largest ? "largest" : "random") + ")";
      break;
    case StrategyKind::zero:
    case StrategyKind::signflip:
    case StrategyKind::random_value:
      break;
  }
  if (!scope.include.empty() || !scope.exclude.empty()) label += "[" + scope.canonical() + "]";
  return label;
}

namespace {

// The kind a strategy line names; InputError naming `where` for an unknown name.
StrategyKind strategy_kind(const std::string& name, const std::string& where) {
  static const std::pair<const char*, StrategyKind> kinds[] = {
      {"zero", StrategyKind::zero},
      {"gaussian", StrategyKind::gaussian},
      {"signflip", StrategyKind::signflip},
      {"bitflip", StrategyKind::bitflip},
      {"random-value", StrategyKind::random_value},
      {"scale", StrategyKind::scale},
      {"magnitude", StrategyKind::magnitude},
      {"delta", StrategyKind::delta},
      {"taylor", StrategyKind::taylor},
      {"wanda", StrategyKind::wanda},
      {"bfa", StrategyKind::bfa},
      {"finetune", StrategyKind::finetune}};
  for (const auto& [kind_name, kind] : kinds) {
    if (name == kind_name) return kind;
  }
  throw InputError(where + ": unknown strategy '" + name +
                   "'; expected zero, gaussian, signflip, bitflip, random-value, scale, "
                   "magnitude, delta, taylor, wanda, bfa or finetune");
}

// Which optional parameters a strategy line gave: some are required, bits only sometimes allowed.
struct GivenParameters {
  bool sigma = false, factor = false, bits = false;
};

// Applies one "key=value" word of strategy `name` to `s`. (Long: a flat list with one branch per
// key, each checking which strategies take it and what values it accepts.)
void apply_parameter(const std::string& word, const std::string& name, const std::string& where,
                     StrategySpec& s, GivenParameters& given) {
  const size_t eq = word.find('=');
  check_input(eq != std::string::npos && eq > 0,
              where + ": strategy '" + name + "': expected key=value, found '" + word + "'");
  const std::string key = word.substr(0, eq), value = word.substr(eq + 1);
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
    given.sigma = true;
  } else if (key == "relative") {
    allowed(s.kind == StrategyKind::gaussian);
    if (value == "abs")
      s.relative_to = SigmaRelativeTo::abs;
    else if (value == "std")
      s.relative_to = SigmaRelativeTo::std;
    else if (value == "absolute")
      s.relative_to = SigmaRelativeTo::absolute;
    else
      throw InputError(where + ": gaussian relative must be abs, std or absolute, found '" + value +
                       "'");
  } else if (key == "factor") {
    allowed(s.kind == StrategyKind::scale);
    s.factor = parse_number(value, key, where);
    given.factor = true;
  } else if (key == "bits") {
    allowed(s.kind == StrategyKind::bitflip || s.targeted() || s.kind == StrategyKind::bfa);
    parse_bits(value, where, s);
    given.bits = true;
  } else if (key == "from") {
    allowed(s.kind == StrategyKind::delta);
    check_input(!value.empty() &&
                    value.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789._-") == std::string::npos,
                where + ": delta from must name a model of the job, found '" + value + "'");
    s.from_model = value;
  } else if (key == "order") {
    allowed(s.kind == StrategyKind::delta);
    if (value == "random")
      s.order = DeltaOrder::random;
    else if (value == "largest")
      s.order = DeltaOrder::largest;
    else
      throw InputError(where + ": delta order must be random or largest, found '" + value + "'");
  } else if (key == "then") {
    allowed(s.targeted());
    if (value == "zero")
      s.action = TargetAction::zero;
    else if (value == "signflip")
      s.action = TargetAction::signflip;
    else if (value == "bitflip")
      s.action = TargetAction::bitflip;
    else
      throw InputError(where + ": " + name + " then must be zero, signflip or bitflip, found '" +
                       value + "'");
  } else if (key == "objective") {
    allowed(s.uses_gradient());
    s.objective = parse_objective(value, where);
  } else if (key == "candidates") {
    allowed(s.kind == StrategyKind::bfa);
    s.candidates = parse_count(value, key, 1, 1 << 20, where);
  } else if (key == "limit") {
    allowed(s.kind == StrategyKind::bfa);
    s.limit = parse_count(value, key, 1, int64_t{1} << 40, where);
  } else if (key == "steps") {
    allowed(s.kind == StrategyKind::finetune);
    s.steps = parse_count(value, key, 1, 1 << 20, where);
  } else if (key == "lr") {
    allowed(s.kind == StrategyKind::finetune);
    s.lr = parse_number(value, key, where);
    check_input(s.lr > 0, where + ": finetune lr must be > 0, found " + value);
  } else if (key == "sites") {
    allowed(s.kind == StrategyKind::finetune);
    if (value == "taylor")
      s.sites = FinetuneSites::taylor;
    else if (value == "random")
      s.sites = FinetuneSites::random;
    else
      throw InputError(where + ": finetune sites must be taylor or random, found '" + value + "'");
  } else {
    throw InputError(where + ": strategy '" + name + "': unknown parameter '" + key + "'");
  }
}

// Equivalent scopes get one label (and so one site stream); then the parameters a kind needs.
void normalise_and_check(StrategySpec& s, const GivenParameters& given, const std::string& where) {
  // Scopes: sorted, deduplicated, no "*".
  for (auto* patterns : {&s.scope.include, &s.scope.exclude}) {
    std::sort(patterns->begin(), patterns->end());
    patterns->erase(std::unique(patterns->begin(), patterns->end()), patterns->end());
  }
  if (std::find(s.scope.include.begin(), s.scope.include.end(), "*") != s.scope.include.end()) {
    s.scope.include.clear();
  }
  check_input(s.kind != StrategyKind::gaussian || given.sigma,
              where + ": gaussian needs sigma=<number>");
  check_input(s.kind != StrategyKind::scale || given.factor,
              where + ": scale needs factor=<number>");
  check_input(s.kind != StrategyKind::delta || !s.from_model.empty(),
              where + ": delta needs from=MODEL, the model whose values it moves in");
  if (s.targeted()) {
    const std::string name = s.name();
    if (s.flips_bits()) {
      // taylor picks the best bit of the class per weight; magnitude and wanda rank by the
      // weight alone and need one fixed bit.
      if (!given.bits)
        s.bits = s.kind == StrategyKind::taylor ? BitClass::any : BitClass::exponent_msb;
      check_input(s.kind == StrategyKind::taylor || s.bits == BitClass::sign ||
                      s.bits == BitClass::exponent_msb || s.bits == BitClass::explicit_bit,
                  where + ": " + name +
                      " then=bitflip is deterministic and needs one fixed bit: "
                      "bits=sign, exponent-msb or a bit number, found bits=" +
                      bits_text(s));
    } else {
      check_input(!given.bits, where + ": bits is only valid with " + name + " then=bitflip");
    }
  }
}

}  // namespace

StrategySpec parse_strategy(std::string_view text, const std::string& where) {
  const std::vector<std::string> words = split_whitespace(text);
  check_input(!words.empty(), where +
                                  ": empty strategy; expected a name such as zero, gaussian, "
                                  "signflip, bitflip, random-value, scale or magnitude");
  StrategySpec s;
  s.kind = strategy_kind(words[0], where);
  GivenParameters given;
  for (size_t i = 1; i < words.size(); ++i) apply_parameter(words[i], words[0], where, s, given);
  normalise_and_check(s, given, where);
  return s;
}

}  // namespace fracsweep
