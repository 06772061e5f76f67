#include "fracsweep/formats/sequential_spec.hpp"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "fracsweep/formats/json.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/text.hpp"

namespace fracsweep {

namespace {

constexpr const char* format_tag = "fracsweep-sequential/1";
constexpr int64_t max_dimension = int64_t{1} << 31;  // any single dimension of a shape
constexpr int64_t max_elements = int64_t{1} << 40;   // any product of dimensions

struct KindInfo {
  LayerKind kind;
  std::set<std::string> keys;  // allowed keys besides "type"
};

const std::map<std::string, KindInfo>& layer_kinds() {
  static const std::map<std::string, KindInfo> kinds = {
      {"linear", {LayerKind::linear, {"weight", "bias"}}},
      {"conv2d", {LayerKind::conv2d, {"weight", "bias", "stride", "padding"}}},
      {"batchnorm",
       {LayerKind::batchnorm, {"weight", "bias", "running_mean", "running_var", "eps"}}},
      {"relu", {LayerKind::relu, {}}},
      {"gelu", {LayerKind::gelu, {}}},
      {"tanh", {LayerKind::tanh, {}}},
      {"maxpool2d", {LayerKind::maxpool2d, {"kernel", "stride"}}},
      {"avgpool2d", {LayerKind::avgpool2d, {"kernel", "stride"}}},
      {"flatten", {LayerKind::flatten, {}}},
      {"dropout", {LayerKind::dropout, {"p"}}},
      {"softmax", {LayerKind::softmax, {}}},
      {"log_softmax", {LayerKind::log_softmax, {}}},
  };
  return kinds;
}

// "a, b, c" for messages listing what is allowed; "none" for nothing.
std::string joined(const std::set<std::string>& words) {
  return words.empty() ? "none" : join(words, ", ");
}

int64_t integer_in(const JsonValue& value, const std::string& where, int64_t low, int64_t high) {
  const int64_t number = value.as_int64(where);
  check_input(number >= low && number <= high,
              where + ": expected an integer in " + std::to_string(low) + ".." +
                  std::to_string(high) + ", found " + std::to_string(number));
  return number;
}

LayerSpec parse_layer(const JsonValue& value, const std::string& where) {
  const JsonValue::Object& members = value.as_object(where);
  const std::string& type = value.at("type", where).as_string(where + ".type");
  const auto known = layer_kinds().find(type);
  if (known == layer_kinds().end()) {
    std::set<std::string> names;
    for (const auto& entry : layer_kinds()) names.insert(entry.first);
    throw InputError(where + ".type: unknown layer type '" + type + "' (expected one of " +
                     joined(names) + ")");
  }
  const KindInfo& info = known->second;
  for (const auto& [key, member] : members) {
    check_input(key == "type" || info.keys.count(key) > 0,
                where + ": unknown key '" + key + "' for a " + type +
                    " layer (allowed: " + joined(info.keys) + ")");
  }
  LayerSpec layer;
  layer.kind = info.kind;
  auto text = [&](const char* key, bool required) -> std::string {
    const JsonValue* member = value.find(key);
    if (!member) {
      check_input(!required, where + ": missing key '" + std::string(key) + "' (a tensor name)");
      return "";
    }
    const std::string& name = member->as_string(where + "." + key);
    check_input(!name.empty(), where + "." + key + ": empty tensor name");
    return name;
  };
  switch (layer.kind) {
    case LayerKind::linear:
    case LayerKind::conv2d:
      layer.weight = text("weight", true);
      layer.bias = text("bias", false);
      break;
    case LayerKind::batchnorm:
      layer.weight = text("weight", false);
      layer.bias = text("bias", false);
      layer.running_mean = text("running_mean", true);
      layer.running_var = text("running_var", true);
      break;
    default:
      break;
  }
  if (layer.kind == LayerKind::conv2d) {
    if (const JsonValue* stride = value.find("stride"))
      layer.stride = integer_in(*stride, where + ".stride", 1, 1 << 16);
    if (const JsonValue* padding = value.find("padding"))
      layer.padding = integer_in(*padding, where + ".padding", 0, 1 << 16);
  }
  if (layer.kind == LayerKind::maxpool2d || layer.kind == LayerKind::avgpool2d) {
    layer.kernel = integer_in(value.at("kernel", where), where + ".kernel", 1, 1 << 16);
    const JsonValue* stride = value.find("stride");
    layer.stride = stride ? integer_in(*stride, where + ".stride", 1, 1 << 16) : layer.kernel;
  }
  if (layer.kind == LayerKind::batchnorm) {
    if (const JsonValue* eps = value.find("eps")) {
      layer.eps = eps->as_double(where + ".eps");
      check_input(layer.eps >= 0 && std::isfinite(layer.eps),
                  where + ".eps: expected a finite number >= 0");
    }
  }
  if (layer.kind == LayerKind::dropout) {
    if (const JsonValue* p = value.find("p")) {
      const double probability = p->as_double(where + ".p");
      check_input(probability >= 0 && probability < 1, where + ".p: expected a number in [0, 1)");
    }
  }
  return layer;
}

}  // namespace

int64_t checked_shape_product(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t product = 1;
  for (int64_t dim : shape) {
    check_input(dim >= 1 && dim <= max_dimension, where + ": dimension " + std::to_string(dim) +
                                                      " outside 1.." +
                                                      std::to_string(max_dimension));
    check_input(product <= max_elements / dim,
                where + ": " + shape_text(shape) + " has more than 2^40 elements");
    product *= dim;
  }
  return product;
}

const char* layer_kind_name(LayerKind kind) {
  for (const auto& [name, info] : layer_kinds()) {
    if (info.kind == kind) return name.c_str();
  }
  return "?";
}

SequentialSpec read_sequential_spec(const std::string& json_path) {
  JsonLimits limits;
  limits.max_bytes = int64_t{16} << 20;
  const JsonValue root = parse_json_file(json_path, limits);
  const std::string top = in_file(json_path, "top level");
  auto where = [&](const std::string& field) {
    return in_file(json_path, "field '" + field + "'");
  };
  const std::set<std::string> keys = {"format", "weights", "input", "classes", "layers"};
  for (const auto& [key, value] : root.as_object(top)) {
    check_input(keys.count(key) > 0,
                in_file(json_path, "unknown key '" + key + "' (allowed: " + joined(keys) + ")"));
  }
  SequentialSpec spec;
  spec.path = json_path;
  const std::string& format = root.at("format", top).as_string(where("format"));
  check_input(format == format_tag,
              where("format") + ": expected \"" + format_tag + "\", found \"" + format + "\"");

  const std::string& weights = root.at("weights", top).as_string(where("weights"));
  check_input(!weights.empty(), where("weights") + ": empty file name");
  const std::filesystem::path weights_path(weights);
  spec.weights_path = weights_path.is_absolute()
                          ? weights
                          : (std::filesystem::path(json_path).parent_path() / weights_path)
                                .lexically_normal()
                                .string();

  const JsonValue& input = root.at("input", top);
  for (const auto& [key, value] : input.as_object(where("input"))) {
    check_input(key == "shape", where("input") + ": unknown key '" + key + "' (allowed: shape)");
  }
  const JsonValue::Array& shape = input.at("shape", where("input")).as_array(where("input.shape"));
  check_input(shape.size() == 1 || shape.size() == 3,
              where("input.shape") + ": expected [features] or [channels, height, width], found " +
                  std::to_string(shape.size()) + " dimensions");
  for (size_t d = 0; d < shape.size(); ++d) {
    spec.input_shape.push_back(
        integer_in(shape[d], where("input.shape[" + std::to_string(d) + "]"), 1, max_dimension));
  }
  checked_shape_product(spec.input_shape, where("input.shape"));
  spec.classes = integer_in(root.at("classes", top), where("classes"), 2, 1 << 24);

  const JsonValue::Array& layers = root.at("layers", top).as_array(where("layers"));
  check_input(!layers.empty(), where("layers") + ": no layers");
  for (size_t i = 0; i < layers.size(); ++i) {
    spec.layers.push_back(parse_layer(layers[i], where("layers[" + std::to_string(i) + "]")));
  }
  return spec;
}

}  // namespace fracsweep
