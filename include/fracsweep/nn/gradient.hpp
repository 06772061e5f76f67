#pragma once
// Gradients of a scalar objective of a model's output scores with respect to every parameter
// (every float of Model::values), and the input statistics activation-aware rankings need.
// One backward pass per architecture (llama_backward.hpp, gpt2_backward.hpp,
// sequential_backward.hpp), each a forward pass that keeps what the backward pass needs, the
// objective's derivative at the logits, and the backward pass proper; every GEMM goes through
// gemm.hpp, and every backward kernel has a plain `ref` twin.
#include <cstdint>
#include <functional>

namespace fracsweep {

// An objective of a forward pass's output scores: given `logits` (rows, classes) it writes
// d objective / d logits into `dlogits` (rows, classes) and returns the objective's value.
// Rows are the stacked tokens of a language model's batch or the examples of a classifier.
using LogitObjective =
    std::function<double(const float* logits, int64_t rows, int64_t classes, float* dlogits)>;

// What a gradient pass fills. Each pointer is optional (nullptr: not computed); otherwise it
// holds Model::values.size() floats, indexed like Model::values, and is overwritten entirely.
struct GradientOutputs {
  // d objective / d values[i]; 0 for values the scores do not depend on.
  float* grad = nullptr;
  // The L2 norm, over every row the pass computes, of the input that values[i] multiplies
  // (Wanda's ||x_in||_2), summed in double:
  //   projection weight W (out, in), entry (o, i):  norm of input feature i over all rows;
  //   conv2d weight (O, C, KH, KW), entry (o, c, kh, kw): norm of that im2col column over all
  //     examples and output positions;
  //   bias, LayerNorm / batch-norm shift:            sqrt(rows using it) (it multiplies 1);
  //   RMSNorm / LayerNorm / batch-norm gain, entry i: norm of the normalised input feature i;
  //   embedding table row t (tokens or positions):   sqrt(number of rows that look it up);
  //   a tensor used twice (tied embeddings / classifier): sqrt of the sum of both squares;
  //   batch-norm running statistics (not multiplied with an input): 0.
  float* input_norm = nullptr;
};

}  // namespace fracsweep
