#pragma once
// Internal to the nn layer: the squared input norms per input feature of each tensor
// (gradient.hpp's input_norm), summed over every row of a gradient pass and written out once.
// Shared by the Llama and GPT-2 backward passes.
#include <cstdint>
#include <vector>

#include "fracsweep/model/model.hpp"

namespace fracsweep {

class InputNormSums {
 public:
  explicit InputNormSums(const Model& model) : model_(model) {}

  // Tensor `weights` (rows_out, cols) multiplies x (rows, cols): its column sums += x's
  // squared columns.
  void add_columns(const float* weights, const float* x, int64_t rows, int64_t cols);
  // The same for a norm gain (d): the columns of x (rows, d) normalised per row before the
  // gain, by the RMS (RMSNorm) or, when `centered`, to mean 0 and variance 1 (LayerNorm).
  void add_normalised_columns(const float* gain, const float* x, int64_t rows, int64_t d, float eps,
                              bool centered);

  // Overwrites input_norm (Model::values-sized): 0 everywhere, then entry (o, i) of every
  // summed tensor gets sqrt(column i's sum), and every row t of the embedding table
  // `embedding` (rows of `dim`) sqrt(its sum + lookups[t]) (the table multiplies one-hot rows;
  // a tied classifier adds its column sums).
  void write(float* input_norm, const float* embedding, int64_t dim,
             const std::vector<double>& lookups) const;

  // Every row r of `table` (rows of `dim`) in input_norm = sqrt(lookups[r]) (a lookup table).
  void write_lookup_rows(float* input_norm, const float* table, int64_t dim,
                         const std::vector<double>& lookups) const;
  // Every entry of the `count` values at `weights` = value (e.g. a bias: sqrt(rows)).
  void write_constant(float* input_norm, const float* weights, int64_t count, float value) const;

 private:
  struct Entry {
    const float* weights;
    std::vector<double> sums;  // (cols) squared norm of each input feature
  };
  std::vector<double>& sums_of(const float* weights, int64_t cols);
  int64_t tensor_count(const float* weights) const;  // elements of the tensor starting there

  const Model& model_;
  std::vector<Entry> entries_;
};

}  // namespace fracsweep
