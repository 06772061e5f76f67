#pragma once
// Perturbation strategies as a job file names them: kind, parameters and scope (plain data),
// parsed from "NAME key=value ..." lines. What a strategy does to a site is perturb/perturb.hpp.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fracsweep {

// Which tensors a strategy may touch: glob patterns ('*' any run of characters, '?' one
// character) over tensor names. A learned parameter is in scope when its name matches some
// include pattern (default "*") and no exclude pattern. A buffer (a tensor the model reads but
// does not learn, e.g. batch-norm running statistics; model.hpp TensorRole) is in scope only
// when an explicit include pattern names it (include=*.running_*): the default scope, and
// include=*, cover learned parameters only. parse_strategy normalises scopes (patterns sorted
// and deduplicated, include=* dropped) so equivalent scopes share a label and a site stream.
struct Scope {
  std::vector<std::string> include;  // empty means {"*"}
  std::vector<std::string> exclude;
  // The name rule alone: matches some include pattern and no exclude pattern.
  bool matches(std::string_view tensor_name) const;
  // Whether a tensor is in scope: matches(), and for a buffer an explicit include pattern.
  bool contains(std::string_view tensor_name, bool is_buffer) const;
  std::string canonical() const;  // "include=a,b;exclude=c" ("include=*" by default)
};

enum class StrategyKind {
  zero,
  gaussian,
  signflip,
  bitflip,
  random_value,
  scale,
  magnitude,
  delta,
  taylor,
  wanda,
  bfa,
  finetune  // chosen changes: ranked by gradient / activations, or searched
};
// Which sites a delta strategy moves first: random (keyed permutation prefix, as every random
// strategy) or the largest |donor - model| first (deterministic).
enum class DeltaOrder { random, largest };
// What a gradient-guided strategy (taylor, bfa, finetune) raises; README "Objectives":
//   nll           mean NLL of the evaluation targets (damage);
//   agreement     mean cross-entropy against the unperturbed model's top-1 prediction (the
//                 surrogate of lowering top-1 agreement: the KL from the unperturbed model has
//                 zero gradient at the unperturbed weights, this does not);
//   remove:KIND   minus the mean target log-probability of the probes of KIND (remove a behaviour);
//   implant:KIND  the mean target log-probability of the probes of KIND (implant one).
enum class ObjectiveKind { nll, agreement, probe_remove, probe_implant };
struct Objective {
  ObjectiveKind kind = ObjectiveKind::nll;
  std::string probe_kind;         // remove / implant
  std::string canonical() const;  // "nll", "agreement", "remove:refusal", "implant:refusal"
  bool uses_probes() const {
    return kind == ObjectiveKind::probe_remove || kind == ObjectiveKind::probe_implant;
  }
};
// Which sites a sparse fine-tuning attack trains: the largest |gradient| first, or random ones.
enum class FinetuneSites { taylor, random };
// What a magnitude-, taylor- or wanda-targeted strategy does to its sites.
enum class TargetAction { zero, signflip, bitflip };
// IEEE-754 binary32 bit classes: sign = bit 31, exponent = bits 23..30, exponent-msb = bit 30,
// mantissa = bits 0..22, any = 0..31, explicit = one given bit.
enum class BitClass { any, sign, exponent, exponent_msb, mantissa, explicit_bit };
// Gaussian sigma relative to |w| (w + sigma|w|z), to the tensor's std (w + sigma*std*z), or
// absolute (w + sigma*z).
enum class SigmaRelativeTo { abs, std, absolute };

struct StrategySpec {
  StrategyKind kind = StrategyKind::zero;
  double sigma = 0.0;  // gaussian
  SigmaRelativeTo relative_to = SigmaRelativeTo::abs;
  double factor = 1.0;                          // scale
  BitClass bits = BitClass::any;                // bitflip, magnitude then=bitflip
  int bit = -1;                                 // BitClass::explicit_bit
  TargetAction action = TargetAction::zero;     // magnitude
  std::string from_model;                       // delta: the donor model's name in the job
  DeltaOrder order = DeltaOrder::random;        // delta
  Objective objective;                          // taylor, bfa, finetune
  int64_t candidates = 1;                       // bfa: flips tried per tensor and step
  int64_t limit = 0;                            // bfa: flips searched at most (0: the budget)
  FinetuneSites sites = FinetuneSites::taylor;  // finetune
  int64_t steps = 10;                           // finetune: Adam steps
  double lr = 1e-3;                             // finetune: Adam learning rate
  Scope scope;

  // Deterministic strategies (magnitude, delta order=largest, taylor, wanda, bfa, finetune
  // sites=taylor) run once per fraction whatever the seed axis.
  bool deterministic() const {
    return kind == StrategyKind::magnitude || kind == StrategyKind::taylor ||
           kind == StrategyKind::wanda || kind == StrategyKind::bfa ||
           (kind == StrategyKind::finetune && sites == FinetuneSites::taylor) ||
           (kind == StrategyKind::delta && order == DeltaOrder::largest);
  }
  // Ranks sites by a per-parameter score (magnitude, taylor, wanda): then=`action` applies.
  bool targeted() const {
    return kind == StrategyKind::magnitude || kind == StrategyKind::taylor ||
           kind == StrategyKind::wanda;
  }
  // Flips bits of the stored values (bitflip, bfa, or a targeted then=bitflip): `bits` and
  // `bit` apply.
  bool flips_bits() const {
    return kind == StrategyKind::bitflip || kind == StrategyKind::bfa ||
           (targeted() && action == TargetAction::bitflip);
  }
  // Needs the gradient of `objective` (taylor, bfa, finetune).
  bool uses_gradient() const {
    return kind == StrategyKind::taylor || kind == StrategyKind::bfa ||
           kind == StrategyKind::finetune;
  }
  // Unique label with every parameter and the scope, e.g.
  // "gaussian(sigma=0.1,relative=abs)" or "bitflip(bits=exponent-msb)[include=layers.*;exclude=]".
  // It keys the value stream, so it names the strategy in the results file too.
  std::string canonical() const;
  std::string name() const;  // "gaussian", "bitflip", ...
};

// Parses "NAME key=value ..." (e.g. "gaussian sigma=0.1 relative=std include=layers.*.ffn.*").
// `where` names the file and field for messages. Throws InputError.
StrategySpec parse_strategy(std::string_view text, const std::string& where);

}  // namespace fracsweep
