#include "fracsweep/perturb/perturb.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <exception>
#include <numeric>
#include <sstream>

#include "fracsweep/perturb/saliency.hpp"
#include "fracsweep/util/error.hpp"
#include "fracsweep/util/huge_pages.hpp"

namespace fracsweep {

namespace {

// Position of the last entry <= value in the ascending starts[0, count), starts[0] <= value.
// Branchless: sites arrive in random order, where a branching search mispredicts every step.
size_t last_at_or_below(const int64_t* starts, size_t count, int64_t value) {
  size_t base = 0;
  while (count > 1) {
    const size_t half = count / 2;
    base = starts[base + half] <= value ? base + half : base;
    count -= half;
  }
  return base;
}

// Grows `undo` to hold `k` entries in fresh storage on huge pages (util/huge_pages.hpp): a
// large trial's undo log (16 bytes a site, 1.7 GB at f = 1 of a 110M model) otherwise takes
// one page fault per 4 KB on its first use, seconds in all here.
void reserve_undo_log(std::vector<Touched>& undo, size_t k) {
  if (undo.capacity() >= k) return;
  std::vector<Touched>().swap(undo);
  undo.reserve(k);
  advise_huge_pages(undo.data(), k * sizeof(Touched));
}

// Site ranks per task of the parallel loops over a trial's sites: small enough that a chunk's
// parameters stay in cache between reading their old values and writing the new ones. A
// trial of at most one chunk runs on the calling thread (a team costs more than its work).
constexpr int64_t sites_per_chunk = 4096;

}  // namespace

bool in_scope(const Scope& scope, const TensorInfo& tensor) {
  return scope.contains(tensor.name, tensor.is_buffer());
}

float flip_bit(float value, int bit) {
  return std::bit_cast<float>(std::bit_cast<uint32_t>(value) ^ (uint32_t{1} << bit));
}

void check_strategy_fits(const StrategySpec& strategy, const std::vector<TensorInfo>& tensors,
                         const std::string& where) {
  const bool explicit_bit = strategy.bits == BitClass::explicit_bit && strategy.flips_bits();
  if (!explicit_bit) return;
  for (const TensorInfo& t : tensors) {
    if (!in_scope(strategy.scope, t)) continue;
    check_input(strategy.bit < stored_bit_width(t.stored), [&] {
      return where + ": bits=" + std::to_string(strategy.bit) + " is outside tensor '" + t.name +
             "', stored as " + stored_type_name(t.stored) + " (bits 0.." +
             std::to_string(stored_bit_width(t.stored) - 1) + ")";
    });
  }
}

Perturber::Perturber(const Model& model, uint64_t job_seed, std::string model_name)
    : model_(model), job_seed_(job_seed), model_name_(std::move(model_name)) {
  stats_.reserve(model.tensors.size());
  tensor_offsets_.reserve(model.tensors.size());
  for (const TensorInfo& t : model.tensors) tensor_offsets_.push_back(t.offset);
  for (const FiniteStats& st : finite_stats(model)) stats_.push_back({st.min, st.max, st.std});
}

Perturber::ScopeIndex& Perturber::scope_index(const Scope& scope) {
  const std::string key = scope.canonical();
  auto it = scopes_.find(key);
  if (it != scopes_.end()) return it->second;
  ScopeIndex index;
  index.prefix.push_back(0);
  for (size_t t = 0; t < model_.tensors.size(); ++t) {
    if (!in_scope(scope, model_.tensors[t])) continue;
    index.tensor_ids.push_back(static_cast<int32_t>(t));
    index.prefix.push_back(index.prefix.back() + model_.tensors[t].count);
  }
  // About 64 buckets per tensor: a site's walk from its bucket's slot rarely takes a step.
  const int64_t n_scope = index.prefix.back();
  const auto n_slots = static_cast<int64_t>(index.tensor_ids.size());
  while ((n_scope >> index.bucket_shift) > 64 * n_slots) ++index.bucket_shift;
  if (n_scope > 0) {
    index.bucket_slot.resize(static_cast<size_t>(((n_scope - 1) >> index.bucket_shift) + 1));
    for (size_t bucket = 0; bucket < index.bucket_slot.size(); ++bucket) {
      index.bucket_slot[bucket] = static_cast<int32_t>(
          last_at_or_below(index.prefix.data(), index.prefix.size() - 1,
                           static_cast<int64_t>(bucket) << index.bucket_shift));
    }
  }
  return scopes_.emplace(key, std::move(index)).first->second;
}

int64_t Perturber::scope_size(const Scope& scope) {
  return scope_index(scope).prefix.back();
}

std::string stored_types_in_scope(const std::vector<TensorInfo>& tensors, const Scope& scope) {
  bool present[3] = {false, false, false};  // by StoredType
  for (const TensorInfo& tensor : tensors) {
    if (in_scope(scope, tensor)) present[static_cast<int>(tensor.stored)] = true;
  }
  std::string text;
  for (StoredType type : {StoredType::f32, StoredType::f16, StoredType::bf16}) {
    if (!present[static_cast<int>(type)]) continue;
    text += (text.empty() ? "" : "+") + std::string(stored_type_name(type));
  }
  return text;
}

std::string Perturber::scope_stored_types(const Scope& scope) {
  return stored_types_in_scope(model_.tensors, scope);
}

std::string Perturber::sites_key_text(const Scope& scope, int64_t seed) const {
  return "fracsweep-sites-v1|job_seed=" + std::to_string(job_seed_) + "|model=" + model_name_ +
         "|scope=" + scope.canonical() + "|seed=" + std::to_string(seed);
}

std::string Perturber::values_key_text(const StrategySpec& strategy, int64_t seed) const {
  return "fracsweep-values-v1|job_seed=" + std::to_string(job_seed_) + "|model=" + model_name_ +
         "|strategy=" + strategy.canonical() + "|seed=" + std::to_string(seed);
}

Perturber::SiteSource Perturber::site_source(const StrategySpec& strategy, int64_t k,
                                             int64_t seed) {
  ScopeIndex& index = scope_index(strategy.scope);
  const int64_t n_scope = index.prefix.back();
  check_invariant(k >= 0 && k <= n_scope, "site count outside the scope");
  check_invariant(strategy.kind != StrategyKind::bfa, "bfa sites come from its searched path");
  if (strategy.deterministic()) return {&index, &ranking(index, strategy), std::nullopt};
  if (k == 0) return {&index, nullptr, std::nullopt};
  const KeyedRng rng(key_from_text(sites_key_text(strategy.scope, seed)));
  return {&index, nullptr, KeyedPermutation(rng, n_scope, 0, k)};
}

size_t Perturber::slot_of(const ScopeIndex& scope, int64_t index) {
  auto slot =
      static_cast<size_t>(scope.bucket_slot[static_cast<size_t>(index >> scope.bucket_shift)]);
  while (scope.prefix[slot + 1] <= index) ++slot;  // prefix[n_slots] = n_scope > index
  return slot;
}

void Perturber::site_offsets(const SiteSource& source, int64_t first, int64_t count, int64_t* out,
                             int32_t* tensors) const {
  if (source.ranked) {
    std::copy_n(source.ranked->begin() + first, count, out);
    if (tensors) {
      for (int64_t j = 0; j < count; ++j) tensors[j] = tensor_of(out[j]);
    }
    return;
  }
  if (count == 0) return;
  source.permutation->evaluate(first, count, out);
  to_model_offsets(*source.index, count, out, tensors);
}

void Perturber::to_model_offsets(const ScopeIndex& scope, int64_t count, int64_t* indices,
                                 int32_t* tensors) const {
  for (int64_t j = 0; j < count; ++j) {
    const size_t slot = slot_of(scope, indices[j]);
    const int32_t tensor = scope.tensor_ids[slot];
    indices[j] =
        model_.tensors[static_cast<size_t>(tensor)].offset + (indices[j] - scope.prefix[slot]);
    if (tensors) tensors[j] = tensor;
  }
}

std::vector<int64_t> Perturber::select_sites(const StrategySpec& strategy, int64_t k,
                                             int64_t seed) {
  const SiteSource source = site_source(strategy, k, seed);
  std::vector<int64_t> sites(static_cast<size_t>(k));  // (k) offsets, site rank order
#pragma omp parallel for schedule(static) if (k > sites_per_chunk)
  for (int64_t first = 0; first < k; first += sites_per_chunk) {
    site_offsets(source, first, std::min(sites_per_chunk, k - first), sites.data() + first);
  }
  return sites;
}

std::vector<int64_t> Perturber::ranked_offsets(const ScopeIndex& index,
                                               const std::function<double(int64_t)>& score) const {
  const auto n_scope = static_cast<size_t>(index.prefix.back());
  std::vector<int64_t> offsets;  // (n_scope) in-scope offsets
  std::vector<double> scores;    // (n_scope) their scores
  offsets.reserve(n_scope);
  scores.reserve(n_scope);
  for (int32_t t : index.tensor_ids) {
    const TensorInfo& info = model_.tensors[static_cast<size_t>(t)];
    for (int64_t i = 0; i < info.count; ++i) {
      offsets.push_back(info.offset + i);
      scores.push_back(score(info.offset + i));
    }
  }
  std::vector<size_t> order(n_scope);  // (n_scope) positions in offsets, then sorted
  for (size_t i = 0; i < n_scope; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double ka = scores[a], kb = scores[b];
    const bool nan_a = std::isnan(ka), nan_b = std::isnan(kb);
    if (nan_a != nan_b) return nan_a;
    if (!nan_a && ka != kb) return ka > kb;
    return offsets[a] < offsets[b];
  });
  std::vector<int64_t> ranked(n_scope);  // (n_scope) offsets by descending score
  for (size_t i = 0; i < n_scope; ++i) ranked[i] = offsets[order[i]];
  return ranked;
}

const std::vector<int64_t>& Perturber::ranking(ScopeIndex& index, const StrategySpec& s) {
  const WeightBuffer& values = model_.values;
  const auto at = [](int64_t offset) { return static_cast<size_t>(offset); };
  std::string name;
  std::function<double(int64_t)> score;
  switch (s.kind) {
    case StrategyKind::magnitude:
      name = "magnitude";
      score = [&](int64_t o) { return std::fabs(static_cast<double>(values[at(o)])); };
      break;
    case StrategyKind::wanda:
      check_invariant(!input_norms_.empty(), "wanda ranking before the input norms were computed");
      name = "wanda";
      score = [&](int64_t o) {
        return std::fabs(static_cast<double>(values[at(o)])) * input_norms_[at(o)];
      };
      break;
    case StrategyKind::delta: {
      name = "delta:" + s.from_model;
      const Model& source = donor(s.from_model);
      score = [&values, &source, at](int64_t o) {
        return std::fabs(static_cast<double>(source.values[at(o)]) - values[at(o)]);
      };
      break;
    }
    case StrategyKind::taylor: {
      const std::vector<float>& g = required_gradient(s.objective);
      StrategySpec rule = s;
      rule.scope = Scope{};
      name = "taylor:" + rule.canonical();
      score = [this, &g, &values, at, rule](int64_t o) {
        const StoredType stored = model_.tensors[static_cast<size_t>(tensor_of(o))].stored;
        return targeted_change(rule, stored, values[at(o)], g[at(o)]).gain;
      };
      break;
    }
    case StrategyKind::finetune: {
      const std::vector<float>& g = required_gradient(s.objective);
      name = "gradient:" + s.objective.canonical();
      score = [&g, at](int64_t o) { return std::fabs(static_cast<double>(g[at(o)])); };
      break;
    }
    default:
      check_invariant(false, "no ranking for strategy " + s.canonical());
  }
  std::vector<int64_t>& ranked = index.ranked[name];
  if (ranked.empty() && index.prefix.back() > 0) ranked = ranked_offsets(index, score);
  return ranked;
}

void Perturber::add_gradient(const std::string& objective, std::vector<float> values) {
  check_invariant(values.size() == model_.values.size(), "gradient of the wrong size");
  gradients_[objective] = std::move(values);
}

void Perturber::add_input_norms(std::vector<float> norms) {
  check_invariant(norms.size() == model_.values.size(), "input norms of the wrong size");
  input_norms_ = std::move(norms);
}

const std::vector<float>* Perturber::gradient(const std::string& objective) const {
  const auto found = gradients_.find(objective);
  return found == gradients_.end() ? nullptr : &found->second;
}

const std::vector<float>& Perturber::required_gradient(const Objective& objective) const {
  const std::vector<float>* g = gradient(objective.canonical());
  check_invariant(g != nullptr, "ranking by the gradient of " + objective.canonical() +
                                    " before it was computed");
  return *g;
}

void Perturber::add_donor(const std::string& name, const Model& donor_model) {
  check_same_tensors(model_, donor_model, "delta from=" + name);
  check_same_tensor_tables(model_.tensors, model_.path, donor_model.tensors, donor_model.path,
                           "delta from=" + name, true);
  donors_[name] = &donor_model;
}

const Model& Perturber::donor(const std::string& name) const {
  const auto found = donors_.find(name);
  check_invariant(found != donors_.end(),
                  "delta from=" + name + ": the donor model was not loaded");
  return *found->second;
}

int32_t Perturber::tensor_of(int64_t offset) const {
  return static_cast<int32_t>(
      last_at_or_below(tensor_offsets_.data(), tensor_offsets_.size(), offset));
}

namespace {

// The 16-bit variant of a strategy's new value: bit flips act on the stored pattern, computed
// values are rounded to the stored type; the result is the exact widening.
template <typename Draws>
float new_stored16_value(StoredType type, const StrategySpec& s, const Draws& draws, float old,
                         float float32_result) {
  const int exponent_low = type == StoredType::bf16 ? 7 : 10;  // also the mantissa width
  const uint16_t pattern = float_to_stored16(type, old);
  auto flip = [&](int bit) {
    check_invariant(bit >= 0 && bit < 16, "bit outside a 16-bit stored value");
    return stored16_to_float(type, static_cast<uint16_t>(pattern ^ (1u << bit)));
  };
  if (s.flips_bits()) {
    switch (s.bits) {
      case BitClass::sign:
        return flip(15);
      case BitClass::exponent_msb:
        return flip(14);
      case BitClass::explicit_bit:
        return flip(s.bit);
      case BitClass::exponent:
        return flip(exponent_low +
                    static_cast<int>(draws.below(static_cast<uint64_t>(15 - exponent_low))));
      case BitClass::mantissa:
        return flip(static_cast<int>(draws.below(static_cast<uint64_t>(exponent_low))));
      case BitClass::any:
        return flip(static_cast<int>(draws.below(16)));
    }
  }
  if (s.kind == StrategyKind::signflip || (s.targeted() && s.action == TargetAction::signflip)) {
    return stored16_to_float(type, static_cast<uint16_t>(pattern ^ 0x8000u));
  }
  return stored16_to_float(type, round_to_stored16(type, float32_result));
}

}  // namespace

float Perturber::new_value(const StrategySpec& s, const SiteDraws& draws, int64_t offset,
                           int32_t tensor, float old, const float* per_value) const {
  // The donor's working value is the exact widening of its stored pattern, which has this
  // tensor's format (add_donor): moving it moves the stored bits exactly.
  if (s.kind == StrategyKind::delta) return per_value[offset];
  const StoredType stored = model_.tensors[static_cast<size_t>(tensor)].stored;
  if (s.kind == StrategyKind::taylor) {  // the change its ranking predicted
    return targeted_change(s, stored, old, per_value[offset]).new_value;
  }
  if (stored == StoredType::f32) return new_float32_value(s, draws, tensor, old);
  // Bit flips draw from the stream themselves; the float32 result is only used by computed
  // strategies (and never draws for flips).
  const float float32_result = s.flips_bits() ? old : new_float32_value(s, draws, tensor, old);
  return new_stored16_value(stored, s, draws, old, float32_result);
}

float Perturber::new_float32_value(const StrategySpec& s, const SiteDraws& draws, int32_t tensor,
                                   float old) const {
  auto flip = [&](BitClass bits) {
    switch (bits) {
      case BitClass::sign:
        return flip_bit(old, 31);
      case BitClass::exponent_msb:
        return flip_bit(old, 30);
      case BitClass::explicit_bit:
        return flip_bit(old, s.bit);
      case BitClass::exponent:
        return flip_bit(old, 23 + static_cast<int>(draws.below(8)));
      case BitClass::mantissa:
        return flip_bit(old, static_cast<int>(draws.below(23)));
      case BitClass::any:
        return flip_bit(old, static_cast<int>(draws.below(32)));
    }
    return old;
  };
  switch (s.kind) {
    case StrategyKind::zero:
      return 0.0f;
    case StrategyKind::signflip:
      return -old;
    case StrategyKind::scale:
      return static_cast<float>(static_cast<double>(old) * s.factor);
    case StrategyKind::bitflip:
      return flip(s.bits);
    case StrategyKind::gaussian: {
      double scale = s.sigma;
      if (s.relative_to == SigmaRelativeTo::abs) scale *= std::fabs(static_cast<double>(old));
      if (s.relative_to == SigmaRelativeTo::std) scale *= stats_[static_cast<size_t>(tensor)].std;
      return static_cast<float>(static_cast<double>(old) + scale * draws.normal());
    }
    case StrategyKind::random_value: {
      const TensorStats& st = stats_[static_cast<size_t>(tensor)];
      return static_cast<float>(st.min +
                                draws.uniform01() * (static_cast<double>(st.max) - st.min));
    }
    case StrategyKind::magnitude:
    case StrategyKind::wanda:
      switch (s.action) {
        case TargetAction::zero:
          return 0.0f;
        case TargetAction::signflip:
          return -old;
        case TargetAction::bitflip:
          return flip(s.bits);
      }
      break;
    case StrategyKind::delta:     // new_value moves the donor's value
    case StrategyKind::taylor:    // new_value applies the predicted change
    case StrategyKind::bfa:       // the session writes its searched path
    case StrategyKind::finetune:  // the session trains the sites
      break;
  }
  return old;
}

namespace {

// The first exception thrown on any thread of a parallel loop, rethrown after the loop.
class FirstFailure {
 public:
  bool seen() const {
    int seen = 0;
#pragma omp atomic read
    seen = seen_;
    return seen != 0;
  }
  void capture() {
#pragma omp critical(fracsweep_first_failure)
    if (!failure_) failure_ = std::current_exception();
#pragma omp atomic write
    seen_ = 1;
  }
  void rethrow_if_any() const {
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  std::exception_ptr failure_;
  int seen_ = 0;  // whether failure_ is set, read without the critical section
};

}  // namespace

struct Perturber::ChunkWriter {
  const Perturber& perturber;
  Model& model;
  const StrategySpec& strategy;
  const KeyedRng& values;         // the trial's values stream
  const float* per_value;         // the donor's values (delta), the gradient (taylor) or null
  bool draws_lane1, draws_lane2;  // which lanes of the stream the strategy reads

  bool draws() const { return draws_lane1 || draws_lane2; }

  void log(const int64_t* offsets, int64_t count, Touched* undo) const {
    for (int64_t j = 0; j < count; ++j) {
      undo[j] = {offsets[j], model.values[static_cast<size_t>(offsets[j])]};
    }
  }

  // `ranks` may be null when the strategy draws nothing.
  int64_t write(const int64_t* offsets, const int32_t* tensors, const uint64_t* ranks,
                int64_t count, const Touched* undo, SiteRecord* record) const {
    uint64_t lane1[sites_per_chunk];  // (count) attempt-0 draws of the stream at `ranks`, lane 1
    uint64_t lane2[sites_per_chunk];  // (count) lane 2
    if (draws_lane1) values.u64_at(ranks, count, 1, lane1);
    if (draws_lane2) values.u64_at(ranks, count, 2, lane2);
    int64_t changed = 0;
    for (int64_t j = 0; j < count; ++j) {
      const float old = undo[j].old_value;
      const Perturber::SiteDraws draws{values, ranks ? ranks[j] : 0, draws_lane1 ? lane1[j] : 0,
                                       draws_lane2 ? lane2[j] : 0};
      const float updated =
          perturber.new_value(strategy, draws, offsets[j], tensors[j], old, per_value);
      model.values[static_cast<size_t>(offsets[j])] = updated;
      changed += std::bit_cast<uint32_t>(updated) != std::bit_cast<uint32_t>(old);
      if (record) record[j] = {offsets[j], old, updated};
    }
    return changed;
  }
};

int64_t Perturber::apply(Model& model, const StrategySpec& strategy, int64_t k, int64_t seed,
                         std::vector<Touched>& undo, std::vector<SiteRecord>* record) {
  check_invariant(&model == &model_, "Perturber applied to a model it was not built for");
  undo.clear();  // nothing to restore if the checks below throw
  if (record) record->clear();
  const SiteSource source = site_source(strategy, k, seed);
  const KeyedRng values_rng(key_from_text(values_key_text(strategy, seed)));
  // What delta and taylor read per site, looked up once: the donor's values, the gradient.
  const float* per_value =
      strategy.kind == StrategyKind::delta    ? donor(strategy.from_model).values.data()
      : strategy.kind == StrategyKind::taylor ? required_gradient(strategy.objective).data()
                                              : nullptr;
  // Which lanes of the values stream the strategy reads (rng.hpp; perturb.hpp's recipe).
  const bool draws_lane2 = strategy.kind == StrategyKind::gaussian;
  const bool draws_lane1 =
      draws_lane2 || strategy.kind == StrategyKind::random_value ||
      (strategy.flips_bits() && strategy.bits != BitClass::sign &&
       strategy.bits != BitClass::exponent_msb && strategy.bits != BitClass::explicit_bit);
  const ChunkWriter writer{*this, model, strategy, values_rng, per_value, draws_lane1, draws_lane2};
  // The undo log is the only O(k) memory: sites are drawn chunk by chunk straight into it.
  reserve_undo_log(undo, static_cast<size_t>(k));
  undo.resize(static_cast<size_t>(k));  // (k) site rank or offset order
  if (record) record->resize(static_cast<size_t>(k));
  const int64_t n_scope = source.index->prefix.back();
  const bool in_offset_order =
      source.permutation && !record &&
      (visits_ == SiteVisits::in_offset_order ||
       (visits_ == SiteVisits::automatic && k * offset_order_from >= n_scope));
  return in_offset_order
             ? write_in_offset_order(source, k, writer, undo.data())
             : write_by_rank(source, k, writer, undo.data(), record ? record->data() : nullptr);
}

int64_t Perturber::write_by_rank(const SiteSource& source, int64_t k, const ChunkWriter& writer,
                                 Touched* undo, SiteRecord* record) const {
  int64_t changed = 0;
  FirstFailure failure;
#pragma omp parallel for schedule(static) reduction(+ : changed) if (k > sites_per_chunk)
  for (int64_t first = 0; first < k; first += sites_per_chunk) {
    const int64_t count = std::min(sites_per_chunk, k - first);
    int64_t offsets[sites_per_chunk];  // (count) offsets of site ranks first, first + 1, ...
    int32_t tensors[sites_per_chunk];  // (count) their tensors
    uint64_t ranks[sites_per_chunk];   // (count) first, first + 1, ...
    site_offsets(source, first, count, offsets, tensors);
    for (int64_t j = 0; j < count; ++j) ranks[j] = static_cast<uint64_t>(first + j);
    // Every chunk logs its sites before any is written, even after a failure elsewhere, so the
    // undo log is complete (sites are distinct: no chunk sees another's new values).
    writer.log(offsets, count, undo + first);
    if (failure.seen()) continue;
    try {
      changed += writer.write(offsets, tensors, ranks, count, undo + first,
                              record ? record + first : nullptr);
    } catch (...) {
      failure.capture();
    }
  }
  failure.rethrow_if_any();
  return changed;
}

int64_t Perturber::write_in_offset_order(const SiteSource& source, int64_t k,
                                         const ChunkWriter& writer, Touched* undo) const {
  const KeyedPermutation& permutation = *source.permutation;
  const int64_t n_scope = permutation.size();
  const int64_t n_chunks = (n_scope + sites_per_chunk - 1) / sites_per_chunk;
  const bool every_index = k == n_scope;  // then every chunk is all sites, ranks or not
  const bool needs_ranks = !every_index || writer.draws();
  // (n_chunks + 1) where each chunk's sites start in the undo log; the last entry is k
  std::vector<int64_t> starts(static_cast<size_t>(n_chunks + 1), 0);
  if (every_index) {
    for (int64_t c = 0; c < n_chunks; ++c) starts[static_cast<size_t>(c)] = c * sites_per_chunk;
    starts.back() = n_scope;
  } else {  // a first pass counts each chunk's sites
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t first = c * sites_per_chunk;
      const int64_t count = std::min(sites_per_chunk, n_scope - first);
      int64_t ranks[sites_per_chunk];  // (count) ranks of in-scope indices first, first + 1, ...
      permutation.invert(first, count, ranks);
      int64_t sites = 0;
      for (int64_t j = 0; j < count; ++j) sites += ranks[j] < k;
      starts[static_cast<size_t>(c + 1)] = sites;
    }
    std::partial_sum(starts.begin(), starts.end(), starts.begin());
  }
  check_invariant(starts.back() == k, "offset-order visits found other than k sites");
  int64_t changed = 0;
  FirstFailure failure;
#pragma omp parallel for schedule(static) reduction(+ : changed) if (n_chunks > 1)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t first = c * sites_per_chunk;
    const int64_t count = std::min(sites_per_chunk, n_scope - first);
    int64_t
        offsets[sites_per_chunk];  // (sites) in-scope indices of this chunk's sites, then offsets
    int32_t tensors[sites_per_chunk];  // (sites) their tensors
    uint64_t ranks[sites_per_chunk];   // (sites) their site ranks
    int64_t sites = 0;
    if (needs_ranks) {
      permutation.invert(first, count, offsets);  // (count) the rank of each in-scope index
      for (int64_t j = 0; j < count; ++j) {       // keeps ranks below k; sites <= j: read first
        const int64_t rank = offsets[j];
        ranks[sites] = static_cast<uint64_t>(rank);
        offsets[sites] = first + j;
        sites += rank < k;
      }
    } else {
      for (int64_t j = 0; j < count; ++j) offsets[j] = first + j;
      sites = count;
    }
    to_model_offsets(*source.index, sites, offsets, tensors);
    Touched* log = undo + starts[static_cast<size_t>(c)];
    writer.log(offsets, sites, log);  // before any write, even after a failure elsewhere
    if (failure.seen()) continue;
    try {
      changed += writer.write(offsets, tensors, needs_ranks ? ranks : nullptr, sites, log, nullptr);
    } catch (...) {
      failure.capture();
    }
  }
  failure.rethrow_if_any();
  return changed;
}

void Perturber::restore(Model& model, const std::vector<Touched>& undo, UndoOffsets offsets) {
  if (offsets == UndoOffsets::may_repeat) {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      model.values[static_cast<size_t>(it->offset)] = it->old_value;
    }
    return;
  }
  const auto count = static_cast<int64_t>(undo.size());
#pragma omp parallel for schedule(static) if (count > sites_per_chunk)
  for (int64_t i = 0; i < count; ++i) {
    const Touched& site = undo[static_cast<size_t>(i)];
    model.values[static_cast<size_t>(site.offset)] = site.old_value;
  }
}

}  // namespace fracsweep
