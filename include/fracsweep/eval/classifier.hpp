#pragma once
// Sequential classifiers in a sweep: the model loaded from its JSON description + safetensors,
// its evaluation examples, and the evaluator scoring a (perturbed) model against its
// unperturbed self on the same examples: one "position" per example, the label as target.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/formats/image_data.hpp"
#include "fracsweep/nn/sequential.hpp"
#include "fracsweep/nn/sequential_backward.hpp"

namespace fracsweep {

// The tensors `spec` names, read from its safetensors file (F32, F16 or BF16) into one flat
// float32 buffer in order of first use; format "sequential", path = the JSON file.
Model load_sequential_model(const SequentialSpec& spec);

// Evaluation examples, scaled, with their labels.
struct ClassifierData {
  int64_t examples = 0;
  std::vector<float> inputs;    // (examples, input size) after scaling
  std::vector<int32_t> labels;  // (examples) class ids
};

// Reads `inputs_path` and `labels_path`, checks them against `spec` (shapes, counts, label
// range) and scales the first `limit` (0: all) examples. `context` starts every message.
ClassifierData read_classifier_data(const SequentialSpec& spec, const std::string& inputs_path,
                                    const std::string& labels_path, int64_t limit,
                                    const InputScaling& scaling, const std::string& context);

class ClassifierEvaluator : public Evaluator {
 public:
  // Computes the baseline of `model` as it is now (unperturbed). Throws InputError when the
  // unperturbed model's outputs on an example are not finite.
  ClassifierEvaluator(const Model& model, SequentialNetwork network, ClassifierData data);

  const Baseline& baseline() const override { return baseline_; }
  TrialMetrics evaluate(const Model& model) override;
  void set_reference(const Model& reference) override;
  double forward_flops() const override;
  std::vector<CrossEntropyTerm> objective_terms(const Objective& objective) const override;
  double gradient(const Model& model, const std::vector<CrossEntropyTerm>& terms,
                  const GradientOutputs& out) override;
  double objective_value(const Model& model, const std::vector<CrossEntropyTerm>& terms) override;
  // Logits of the last evaluate() / baseline run: (examples, classes).
  const std::vector<float>& logits() const { return logits_; }

 private:
  TrialMetrics score() const;

  SequentialNetwork network_;
  ClassifierData data_;
  SequentialWorkspace workspace_;
  std::vector<float> logits_;           // (examples, classes)
  std::vector<float> ref_probs_;        // (examples, classes) unperturbed probabilities
  std::vector<ReferenceRow> ref_rows_;  // (examples) views into ref_probs_
  std::vector<float> second_probs_;     // (examples, classes) a second checkpoint's probabilities
  std::vector<ReferenceRow> second_rows_;  // (examples) views into second_probs_; empty: none
  std::vector<TensorInfo> tensors_;        // the model's tensor table (a reference must match it)
  std::unique_ptr<SequentialGradientWorkspace> gradient_workspace_;  // built by the first gradient
  Baseline baseline_;
};

}  // namespace fracsweep
