#include "fracsweep/model/model.hpp"

#include <string>

#include "fracsweep/util/error.hpp"

namespace fracsweep {

const TensorInfo& Model::tensor(const std::string& name) const {
  for (const TensorInfo& t : tensors) {
    if (t.name == name) return t;
  }
  throw InputError(in_file(path, "model has no tensor named '" + name + "'"));
}

void append_tensor(std::vector<TensorInfo>& tensors, const std::string& name,
                   std::vector<int64_t> shape) {
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  const int64_t offset = tensors.empty() ? 0 : tensors.back().offset + tensors.back().count;
  tensors.push_back(TensorInfo{name, std::move(shape), offset, count});
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += 'x';
    text += std::to_string(shape[i]);
  }
  return text;
}

}  // namespace fracsweep
