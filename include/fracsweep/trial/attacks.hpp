#pragma once
// The deliberate-change strategies that need more than a ranking: the progressive bit search
// (bfa) and the sparse fine-tuning attack (finetune), and the saliency (gradient, input norms)
// the ranked strategies (taylor, wanda, finetune sites=taylor) read. All run on one rank's
// model in place and leave it bitwise as they found it (or hand back an undo log).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/eval/evaluator.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/perturb/perturb.hpp"
#include "fracsweep/trial/trial.hpp"

namespace fracsweep {

// Per model: the saliency sources, bfa paths and finetune runs of its strategies, computed at
// the unperturbed weights and cached (a bfa path is searched once, as far as the largest count
// asked for, and every count's trial replays its prefix).
class AttackRunner {
 public:
  AttackRunner(Model& model, Evaluator& evaluator, Perturber& perturber)
      : model_(model), evaluator_(evaluator), perturber_(perturber) {}

  // Checks, before any work, that `strategy` can run on this model: its objective exists
  // (InputError otherwise, prefixed by `where`).
  void check(const StrategySpec& strategy, const std::string& where) const;

  // Makes sure `perturber_` holds what `strategy`'s ranking reads (gradient of its objective,
  // input norms), computing it now at the model's current (unperturbed) weights.
  void prepare_ranking(const StrategySpec& strategy);

  // The first `k` flips of `strategy`'s bfa path, searching it further when needed. The model
  // is unperturbed before and after. Once a flip makes the objective non-finite (outputs
  // destroyed; for implant:KIND, the search cannot go on) the path ends there, and it never
  // grows past the strategy's limit=: a larger budget returns fewer than `k` flips.
  std::vector<PathStep> bfa_path(const StrategySpec& strategy, int64_t k);

  // Trains `k` sites of `strategy` (finetune) with Adam for its steps, raising its objective,
  // and leaves the trained values in the model; `undo` receives every site's old value (for
  // Perturber::restore). Returns how many sites changed bits.
  int64_t finetune(const StrategySpec& strategy, int64_t k, int64_t seed,
                   std::vector<Touched>& undo);

 private:
  const std::vector<CrossEntropyTerm>& terms(const Objective& objective);
  // Which of two objective values is better for the attacker: larger, with a non-finite value
  // (outputs destroyed) best unless the objective implants a behaviour.
  static bool better(const Objective& objective, double a, double b);

  Model& model_;
  Evaluator& evaluator_;
  Perturber& perturber_;
  std::map<std::string, std::vector<CrossEntropyTerm>> terms_;  // by Objective::canonical
  struct SearchedPath {
    std::vector<PathStep> steps;
    bool ended = false;  // the last flip made the objective non-finite: nothing to search
  };
  std::map<std::string, SearchedPath> paths_;  // by StrategySpec::canonical
};

// Writes `steps`' new values in order, appending each site's previous value to `undo` (not
// cleared); returns how many sites now hold a different bit pattern than before.
int64_t apply_path(Model& model, const std::vector<PathStep>& steps, std::vector<Touched>& undo);

}  // namespace fracsweep
