// Sequential classifiers: loader (JSON + safetensors), evaluation data, the classifier
// evaluator, and the registry entry points check_sequential_model / open_sequential_model.
#include <algorithm>

#include "fracsweep/eval/classifier.hpp"
#include "fracsweep/formats/safetensors.hpp"
#include "fracsweep/models/model_loaders.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {

namespace {

NetworkLayout plan_against(const SequentialSpec& spec, const SafetensorsFile& weights) {
  const NetworkLayout layout =
      plan_network(spec, [&](const std::string& name) -> const std::vector<int64_t>* {
        const SafetensorsTensor* tensor = weights.find(name);
        return tensor ? &tensor->shape : nullptr;
      });
  for (const std::string& name : layout.tensor_names) {
    const DType dtype = weights.at(name).dtype;
    check_input(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16,
                in_file(weights.path(), "tensor '" + name +
                                            "', field 'dtype': expected F32, F16 or BF16, found " +
                                            dtype_name(dtype)));
  }
  return layout;
}

InputScaling scaling_of(const JobConfig& job) {
  InputScaling scaling;
  scaling.divisor = job.input_divisor;
  scaling.mean = job.input_mean;
  scaling.std = job.input_std;
  return scaling;
}

std::string context_of(const JobConfig& job, const ModelSpec& spec) {
  return job.path + ": model '" + spec.name + "': ";
}

void check_classifier_eval_keys(const JobConfig& job, const ModelSpec& spec) {
  check_input(!job.eval_inputs.empty() && !job.eval_labels.empty(),
              context_of(job, spec) + "a sequential classifier needs [eval] inputs and labels");
}

}  // namespace

Model load_sequential_model(const SequentialSpec& spec) {
  const SafetensorsFile weights(spec.weights_path);
  const NetworkLayout layout = plan_against(spec, weights);
  Model model;
  model.path = spec.path;
  model.format = "sequential";
  model.architecture = "sequential";
  int64_t total = 0;
  for (size_t t = 0; t < layout.tensor_names.size(); ++t) {
    const SafetensorsTensor& stored = weights.at(layout.tensor_names[t]);
    model.tensors.push_back(TensorInfo{stored.name, stored.shape, total, stored.count,
                                       stored_type_of(stored.dtype, weights.path(), stored.name),
                                       layout.tensor_roles[t]});
    total += stored.count;
  }
  model.values.resize(static_cast<size_t>(total));
  for (const TensorInfo& tensor : model.tensors) {
    weights.read_as_float(weights.at(tensor.name), model.values.data() + tensor.offset);
  }
  return model;
}

ClassifierData read_classifier_data(const SequentialSpec& spec, const std::string& inputs_path,
                                    const std::string& labels_path, int64_t limit,
                                    const InputScaling& scaling, const std::string& context) {
  ExampleArray inputs = read_example_array(inputs_path);
  const ExampleArray labels = read_example_array(labels_path);
  ClassifierData data;
  data.examples = check_eval_arrays(inputs, labels, spec.input_shape, limit, scaling, context);
  data.labels = class_labels(labels, data.examples, spec.classes, context);
  int64_t input_size = 1;
  for (int64_t dim : spec.input_shape) input_size *= dim;
  inputs.values.resize(static_cast<size_t>(data.examples * input_size));
  data.inputs = std::move(inputs.values);
  scale_inputs(data.inputs.data(), data.examples, spec.input_shape, scaling);
  return data;
}

namespace {

// Reference rows (examples) and probabilities (examples, classes) of finite outputs `logits`.
void cache_reference(const std::string& path, const std::vector<float>& logits, int64_t examples,
                     int64_t classes, std::vector<float>& probs, std::vector<ReferenceRow>& rows) {
  probs.resize(logits.size());
  rows.clear();
  rows.reserve(static_cast<size_t>(examples));
  for (int64_t e = 0; e < examples; ++e) {
    const float* row = logits.data() + e * classes;
    check_input(row_is_finite(row, classes),
                path +
                    ": the unperturbed model produces non-finite outputs on evaluation example " +
                    std::to_string(e));
    rows.push_back(make_reference_row(row, classes, probs.data() + e * classes));
  }
}

}  // namespace

ClassifierEvaluator::ClassifierEvaluator(const Model& model, SequentialNetwork network,
                                         ClassifierData data)
    : network_(std::move(network)),
      data_(std::move(data)),
      workspace_(network_, data_.examples),
      logits_(static_cast<size_t>(data_.examples * network_.classes)),
      tensors_(model.tensors) {
  sequential_forward(network_, model, data_.inputs.data(), data_.examples, network_.scored_layers,
                     workspace_, logits_.data());
  cache_reference(model.path, logits_, data_.examples, network_.classes, ref_probs_, ref_rows_);
  baseline_.metrics = score();
}

void ClassifierEvaluator::set_reference(const Model& reference) {
  Model shapes;
  shapes.path = "the evaluated model";
  shapes.tensors = tensors_;
  check_same_tensors(shapes, reference, "reference checkpoint");
  sequential_forward(network_, reference, data_.inputs.data(), data_.examples,
                     network_.scored_layers, workspace_, logits_.data());
  cache_reference(reference.path, logits_, data_.examples, network_.classes, second_probs_,
                  second_rows_);
}

TrialMetrics ClassifierEvaluator::score() const {
  MetricAccumulator accumulator;
  const int64_t classes = network_.classes;
  const bool second = !second_rows_.empty();
  for (int64_t e = 0; e < data_.examples; ++e) {
    const auto i = static_cast<size_t>(e);
    accumulator.add(logits_.data() + e * classes, classes, ref_rows_[i], data_.labels[i],
                    second ? &second_rows_[i] : nullptr);
  }
  return accumulator.finish();
}

TrialMetrics ClassifierEvaluator::evaluate(const Model& model) {
  sequential_forward(network_, model, data_.inputs.data(), data_.examples, network_.scored_layers,
                     workspace_, logits_.data());
  return score();
}

double ClassifierEvaluator::forward_flops() const {
  return network_.forward_flops(data_.examples);
}

std::vector<CrossEntropyTerm> ClassifierEvaluator::objective_terms(
    const Objective& objective) const {
  check_input(!objective.uses_probes(),
              "objective=" + objective.canonical() +
                  " needs behaviour probes, which only language models have; classifiers offer "
                  "objective=nll or objective=agreement");
  std::vector<CrossEntropyTerm> terms;
  const double weight = 1.0 / static_cast<double>(data_.examples);
  for (int64_t e = 0; e < data_.examples; ++e) {
    const int32_t target = objective.kind == ObjectiveKind::agreement
                               ? ref_rows_[static_cast<size_t>(e)].argmax
                               : data_.labels[static_cast<size_t>(e)];
    terms.push_back({e, target, weight});
  }
  return terms;
}

double ClassifierEvaluator::gradient(const Model& model, const std::vector<CrossEntropyTerm>& terms,
                                     const GradientOutputs& out) {
  if (!gradient_workspace_) {
    gradient_workspace_ = std::make_unique<SequentialGradientWorkspace>(network_, data_.examples);
  }
  return sequential_gradient(network_, model, data_.inputs.data(), data_.examples,
                             cross_entropy_objective(terms), out, *gradient_workspace_);
}

double ClassifierEvaluator::objective_value(const Model& model,
                                            const std::vector<CrossEntropyTerm>& terms) {
  sequential_forward(network_, model, data_.inputs.data(), data_.examples, network_.scored_layers,
                     workspace_, logits_.data());
  return cross_entropy_value(terms, logits_.data(), network_.classes);
}

std::vector<TensorInfo> check_sequential_model(const JobConfig& job, const ModelSpec& spec) {
  check_classifier_eval_keys(job, spec);
  check_input(job.eval_probes.empty(),
              in_file(job.path, "[eval] probes are prompts for language models; model '" +
                                    spec.name + "' is a classifier"));
  const SequentialSpec description = read_sequential_spec(spec.path);
  const SafetensorsFile weights(description.weights_path);
  const NetworkLayout layout = plan_against(description, weights);
  std::vector<TensorInfo> tensors;
  for (size_t t = 0; t < layout.tensor_names.size(); ++t) {
    const SafetensorsTensor& stored = weights.at(layout.tensor_names[t]);
    tensors.push_back(TensorInfo{stored.name, stored.shape, 0, stored.count,
                                 stored_type_of(stored.dtype, weights.path(), stored.name),
                                 layout.tensor_roles[t]});
  }
  check_scopes(job, spec, tensors);
  const ExampleArray inputs = read_example_array(job.eval_inputs, true);
  const ExampleArray labels = read_example_array(job.eval_labels);
  const std::string context = context_of(job, spec);
  const int64_t examples = check_eval_arrays(inputs, labels, description.input_shape,
                                             job.eval_examples, scaling_of(job), context);
  class_labels(labels, examples, description.classes, context);
  return tensors;
}

std::unique_ptr<OpenModel> open_sequential_model(const JobConfig& job, const ModelSpec& spec,
                                                 const EvalSources&, const LoadOptions& options) {
  PhaseTimer timer(options);
  check_classifier_eval_keys(job, spec);
  const SequentialSpec description = read_sequential_spec(spec.path);
  auto open = std::make_unique<OpenModel>();
  open->model = load_sequential_model(description);  // small: private memory (node_weights.hpp)
  timer.done("weights");
  ClassifierData data =
      read_classifier_data(description, job.eval_inputs, job.eval_labels, job.eval_examples,
                           scaling_of(job), context_of(job, spec));
  open->evaluator = std::make_unique<ClassifierEvaluator>(
      open->model, build_network(description, open->model), std::move(data));
  timer.done("baseline");
  return open;
}

}  // namespace fracsweep
