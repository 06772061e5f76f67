#include "fracsweep/trial/attacks.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <set>

#include "fracsweep/perturb/saliency.hpp"
#include "fracsweep/util/error.hpp"

namespace fracsweep {
namespace {

// Adam's constants (Kingma & Ba): moment decay rates and the denominator's epsilon.
constexpr double adam_beta1 = 0.9;
constexpr double adam_beta2 = 0.999;
constexpr double adam_epsilon = 1e-8;

const TensorInfo& tensor_at(const Model& model, int64_t offset) {
  const auto it = std::upper_bound(model.tensors.begin(), model.tensors.end(), offset,
                                   [](int64_t o, const TensorInfo& t) { return o < t.offset; });
  check_invariant(it != model.tensors.begin(), "offset before the first tensor");
  return *(it - 1);
}

// `value` as the tensor's stored format can hold it (round to nearest even), widened back.
float representable(StoredType stored, float value) {
  if (stored == StoredType::f32) return value;
  return stored16_to_float(stored, round_to_stored16(stored, value));
}

// A flip considered at one bfa step.
struct Candidate {
  int64_t offset = 0;
  CandidateChange change;
};

// The `count` candidates of `tensor` with the largest predicted gains (ties: lower offset),
// best first.
std::vector<Candidate> best_in_tensor(const Model& model, const TensorInfo& tensor,
                                      const std::vector<float>& gradient, const StrategySpec& s,
                                      int64_t count) {
  std::vector<Candidate> best;  // (<= count) sorted best first
  const auto worse = [](const Candidate& a, const Candidate& b) {
    return a.change.gain < b.change.gain || (a.change.gain == b.change.gain && a.offset > b.offset);
  };
  for (int64_t i = 0; i < tensor.count; ++i) {
    const int64_t offset = tensor.offset + i;
    const auto at = static_cast<size_t>(offset);
    const Candidate candidate{
        offset, best_bit_flip(tensor.stored, model.values[at], gradient[at], s.bits, s.bit)};
    if (static_cast<int64_t>(best.size()) == count && !worse(best.back(), candidate)) continue;
    const auto slot =
        std::upper_bound(best.begin(), best.end(), candidate,
                         [&](const Candidate& a, const Candidate& b) { return worse(b, a); });
    best.insert(slot, candidate);
    if (static_cast<int64_t>(best.size()) > count) best.pop_back();
  }
  return best;
}

}  // namespace

int64_t apply_path(Model& model, const std::vector<PathStep>& steps, std::vector<Touched>& undo) {
  const size_t first_new = undo.size();
  for (const PathStep& step : steps) {
    float& w = model.values[static_cast<size_t>(step.offset)];
    undo.push_back({step.offset, w});
    w = step.new_value;
  }
  // A parameter flipped twice counts once, against its value before the first flip.
  std::set<int64_t> seen;
  int64_t changed = 0;
  for (size_t i = first_new; i < undo.size(); ++i) {
    if (!seen.insert(undo[i].offset).second) continue;
    const float now = model.values[static_cast<size_t>(undo[i].offset)];
    changed += std::bit_cast<uint32_t>(now) != std::bit_cast<uint32_t>(undo[i].old_value);
  }
  return changed;
}

const std::vector<CrossEntropyTerm>& AttackRunner::terms(const Objective& objective) {
  const std::string key = objective.canonical();
  auto found = terms_.find(key);
  if (found == terms_.end())
    found = terms_.emplace(key, evaluator_.objective_terms(objective)).first;
  return found->second;
}

bool AttackRunner::better(const Objective& objective, double a, double b) {
  const bool implant = objective.kind == ObjectiveKind::probe_implant;
  const auto rank = [&](double value) {
    if (std::isfinite(value)) return value;
    return implant ? -std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::infinity();
  };
  return rank(a) > rank(b);
}

void AttackRunner::check(const StrategySpec& strategy, const std::string& where) const {
  if (!strategy.uses_gradient()) return;
  try {
    evaluator_.objective_terms(strategy.objective);
  } catch (const InputError& error) {
    throw InputError(where + ": " + error.what());
  }
}

void AttackRunner::prepare_ranking(const StrategySpec& strategy) {
  if (strategy.kind == StrategyKind::wanda && !perturber_.has_input_norms()) {
    std::vector<float> norms(model_.values.size());  // (n_values)
    evaluator_.gradient(model_, terms(Objective{}), GradientOutputs{nullptr, norms.data()});
    perturber_.add_input_norms(std::move(norms));
  }
  const bool ranks_by_gradient =
      strategy.kind == StrategyKind::taylor ||
      (strategy.kind == StrategyKind::finetune && strategy.sites == FinetuneSites::taylor);
  if (ranks_by_gradient && perturber_.gradient(strategy.objective.canonical()) == nullptr) {
    std::vector<float> gradient(model_.values.size());  // (n_values)
    evaluator_.gradient(model_, terms(strategy.objective),
                        GradientOutputs{gradient.data(), nullptr});
    perturber_.add_gradient(strategy.objective.canonical(), std::move(gradient));
  }
}

std::vector<PathStep> AttackRunner::bfa_path(const StrategySpec& strategy, int64_t k) {
  SearchedPath& searched = paths_[strategy.canonical()];
  std::vector<PathStep>& path = searched.steps;
  if (strategy.limit > 0) k = std::min(k, strategy.limit);
  if (static_cast<int64_t>(path.size()) < k && !searched.ended) {
    const std::vector<CrossEntropyTerm>& objective = terms(strategy.objective);
    std::vector<Touched> undo;
    RestoreOnExit restore(model_, undo);
    apply_path(model_, path, undo);  // continue from the end of the path searched so far
    std::vector<float> gradient(model_.values.size());  // (n_values) at the current weights
    while (static_cast<int64_t>(path.size()) < k && !searched.ended) {
      evaluator_.gradient(model_, objective, GradientOutputs{gradient.data(), nullptr});
      // Each tensor's most promising flips by g * (w' - w), then each one's true objective.
      bool have_best = false;
      Candidate best;
      double best_objective = 0.0;
      for (const TensorInfo& tensor : model_.tensors) {
        if (!in_scope(strategy.scope, tensor)) continue;
        for (const Candidate& candidate :
             best_in_tensor(model_, tensor, gradient, strategy, strategy.candidates)) {
          float& w = model_.values[static_cast<size_t>(candidate.offset)];
          const float old = w;
          w = candidate.change.new_value;
          const double value = evaluator_.objective_value(model_, objective);
          w = old;
          if (!have_best || better(strategy.objective, value, best_objective)) {
            have_best = true;
            best = candidate;
            best_objective = value;
          }
        }
      }
      check_invariant(have_best, "bfa on a scope without parameters");
      float& w = model_.values[static_cast<size_t>(best.offset)];
      const float old = w;
      undo.push_back({best.offset, old});
      w = best.change.new_value;
      const TrialMetrics metrics = evaluator_.evaluate(model_);
      path.push_back({best.offset, best.change.bit, old, best.change.new_value, best_objective,
                      metrics.mean_nll, metrics.top1_agreement, metrics.accuracy});
      searched.ended = !std::isfinite(best_objective);
    }
  }
  return {path.begin(), path.begin() + std::min(k, static_cast<int64_t>(path.size()))};
}

int64_t AttackRunner::finetune(const StrategySpec& strategy, int64_t k, int64_t seed,
                               std::vector<Touched>& undo) {
  undo.clear();
  const std::vector<int64_t> sites = perturber_.select_sites(strategy, k, seed);
  for (const int64_t site : sites) undo.push_back({site, model_.values[static_cast<size_t>(site)]});
  const std::vector<CrossEntropyTerm>& objective = terms(strategy.objective);
  std::vector<double> master(sites.size());  // (k) the attacker's full-precision copy
  std::vector<double> moment1(sites.size(), 0.0), moment2(sites.size(), 0.0);  // (k) Adam
  std::vector<StoredType> stored(sites.size());  // (k) format of each site's tensor
  for (size_t i = 0; i < sites.size(); ++i) {
    master[i] = model_.values[static_cast<size_t>(sites[i])];
    stored[i] = tensor_at(model_, sites[i]).stored;
  }
  std::vector<float> gradient(model_.values.size());  // (n_values) at the current weights
  for (int64_t step = 1; step <= strategy.steps; ++step) {
    evaluator_.gradient(model_, objective, GradientOutputs{gradient.data(), nullptr});
    const double correction1 = 1.0 - std::pow(adam_beta1, static_cast<double>(step));
    const double correction2 = 1.0 - std::pow(adam_beta2, static_cast<double>(step));
    for (size_t i = 0; i < sites.size(); ++i) {
      const double g = gradient[static_cast<size_t>(sites[i])];
      moment1[i] = adam_beta1 * moment1[i] + (1.0 - adam_beta1) * g;
      moment2[i] = adam_beta2 * moment2[i] + (1.0 - adam_beta2) * g * g;
      // Ascent: the attacker raises the objective.
      master[i] += strategy.lr * (moment1[i] / correction1) /
                   (std::sqrt(moment2[i] / correction2) + adam_epsilon);
      model_.values[static_cast<size_t>(sites[i])] =
          representable(stored[i], static_cast<float>(master[i]));
    }
  }
  int64_t changed = 0;
  for (const Touched& site : undo) {
    changed += std::bit_cast<uint32_t>(model_.values[static_cast<size_t>(site.offset)]) !=
               std::bit_cast<uint32_t>(site.old_value);
  }
  return changed;
}

}  // namespace fracsweep
