#pragma once
// Classifier evaluation data: example arrays from IDX files (MNIST's format, gzip or plain) or
// .npy files, checked against a model's input shape, and the declared input scaling
// x / divisor, then (x - mean[c]) / std[c] per channel. Layout is NCHW: axis 0 = examples.
//
// IDX: 2 zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64),
// the number of dimensions, then each dimension as a big-endian uint32 and the big-endian data.
// Untrusted: magic, type, dimensions, size (the data must fill the file exactly) are checked.
#include <cstdint>
#include <string>
#include <vector>

namespace fracsweep {

struct ExampleArray {
  std::string path;
  std::string dtype;           // "idx:u8", "npy:<f4", ... (messages)
  bool integral = false;       // stored as integers (labels must be)
  std::vector<int64_t> shape;  // (examples, ...)
  std::vector<float> values;   // (product of shape) as stored (integers exact up to 2^24);
                               // empty when read with header_only
};

// Reads an IDX (gzip or plain, told apart by content) or .npy file (by its magic). With
// header_only the data is validated but not kept. InputError naming the file otherwise.
ExampleArray read_example_array(const std::string& path, bool header_only = false);

struct InputScaling {
  double divisor = 1.0;      // x / divisor first
  std::vector<double> mean;  // then per channel (x - mean) / std; empty: none; 1 value: all
  std::vector<double> std;   // channels (channel = axis 0 of the model input shape)
};

// Checks that `inputs` holds N examples of `input_shape` (a (N, H, W) array is accepted for
// an input shape (1, H, W)), that `limit` (0: all) does not exceed N, that `labels` is a 1-D
// integer array with one label per example (N of them; with a limit, at least `limit`), and
// that the scaling lists 1 or C channels. Returns the number of examples evaluated. Messages
// name the file and start with `context`.
int64_t check_eval_arrays(const ExampleArray& inputs, const ExampleArray& labels,
                          const std::vector<int64_t>& input_shape, int64_t limit,
                          const InputScaling& scaling, const std::string& context);

// Applies `scaling` in place to `values` (n, product of input_shape).
void scale_inputs(float* values, int64_t n, const std::vector<int64_t>& input_shape,
                  const InputScaling& scaling);

// The first n labels as class ids; InputError when one is outside 0..classes-1.
std::vector<int32_t> class_labels(const ExampleArray& labels, int64_t n, int64_t classes,
                                  const std::string& context);

}  // namespace fracsweep
