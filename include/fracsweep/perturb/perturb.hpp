#pragma once
// Perturbation strategies: which parameters a trial touches (sites) and what it writes there.
// Knows nothing about MPI or HDF5.
//
// Sites: for a (job seed, model, scope, seed) the sites are the prefix of one keyed
// pseudo-random permutation of the in-scope index space, evaluated per site rank, so a smaller
// fraction's sites are a prefix of a larger one's, and every strategy with the same scope and
// seed touches the same sites (common random numbers). New values at site rank i come from a second
// stream keyed by the strategy (with its parameters) and the seed, at counter i.
//
// Exact recipe (mirrored in analysis/fracsweep_analysis/rng.py; see rng.hpp for the generator):
//   sites key text
//   "fracsweep-sites-v1|job_seed=<u64>|model=<name>|scope=<Scope::canonical>|seed=<i64>" values key
//   text
//   "fracsweep-values-v1|job_seed=<u64>|model=<name>|strategy=<StrategySpec::canonical>|seed=<i64>"
//   in-scope index space: the in-scope tensors in model order (ascending offset), concatenated;
//          buffers (TensorRole::buffer) only when an explicit include names them (in_scope).
//   sites: site rank i < k is permute(i) of KeyedPermutation(KeyedRng(key_from_text(sites key)),
//          n_scope, lane 0) (rng.hpp; site recipe "feistel-v1", the results file's site_recipe),
//          the in-scope index mapped to its offset in Model::values. k = Amount::sites(n_scope).
//   values at site rank i (values stream V):
//     zero 0; signflip -w; scale w * factor;
//     bitflip: bit = 31 (sign), 30 (exponent-msb), the explicit bit, 23 + V.below(8, i, 1)
//              (exponent), V.below(23, i, 1) (mantissa) or V.below(32, i, 1) (any);
//     gaussian: w + s * V.normal(i, 1), s = sigma |w| (abs), sigma std(tensor) (std), sigma;
//     random-value: min + V.uniform01(i, 1) * (max - min), over the tensor's finite values.
//   magnitude: no randomness: the k in-scope parameters of largest |w| (ties: lower offset
//          first; NaN counts as largest), then zero / signflip / bitflip of one fixed bit.
//   wanda: the same with score |w| * input_norm (gradient.hpp: Wanda's ||x_in||_2).
//   taylor: the k in-scope parameters of largest predicted gain g * (w' - w) of the change
//          then= makes (saliency.hpp; bitflip: the best bit of the class per parameter), g the
//          gradient of the strategy's objective at the unperturbed weights; ties lower offset.
//   finetune sites=taylor: the k of largest |g| (the first-order gain of a small step);
//          sites=random: the random sites above. bfa: the path the session searched.
//   Statistics (std, min, max) are of the unperturbed tensor.
//
// Stored number format (TensorInfo::stored). A site in an f16 or bf16 tensor is perturbed on
// its 16-bit pattern, then its float32 working value is refreshed by exact widening:
//   bit classes  f16:  sign 15, exponent 10..14, exponent-msb 14, mantissa 0..9, any 0..15
//                bf16: sign 15, exponent 7..14,  exponent-msb 14, mantissa 0..6, any 0..15
//                drawn as exponent_low + V.below(n_exponent, i, 1), V.below(n_mantissa, i, 1),
//                V.below(16, i, 1); explicit bits must be 0..15 (check_strategy_fits).
//   zero, signflip: exact in every format. gaussian, scale, random-value: the float32 result
//                above, rounded to the stored type (round to nearest even).
// f32 tensors behave exactly as before.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fracsweep/config/strategy.hpp"
#include "fracsweep/model/model.hpp"
#include "fracsweep/perturb/rng.hpp"

namespace fracsweep {

// Whether `tensor` is in `scope`: its name matches, and a buffer only under an explicit include
// (Scope::contains with the tensor's role). Every strategy, random or targeted, gradient-guided
// or searched, chooses its sites among the tensors this admits.
bool in_scope(const Scope& scope, const TensorInfo& tensor);

// Flat binary32 bit manipulation shared by strategies and tests.
float flip_bit(float value, int bit);

// Throws InputError (naming `where`) when `strategy` cannot act on some tensor in its scope:
// an explicit bit beyond a 16-bit tensor's width.
void check_strategy_fits(const StrategySpec& strategy, const std::vector<TensorInfo>& tensors,
                         const std::string& where);

// One touched parameter: where, and its value before (restore writes it back bitwise).
struct Touched {
  // Leaves both fields unwritten, so resizing an undo log to k entries costs nothing (apply
  // writes every entry at once; value-initialising them first took a pass over 16 bytes a site).
  Touched() {}  // NOLINT(modernize-use-equals-default): `= default` would zero-fill in resize
  Touched(int64_t offset_, float old_value_) : offset(offset_), old_value(old_value_) {}
  int64_t offset;  // index into Model::values
  float old_value;
};

// Whether an undo log may name an offset more than once: never for Perturber::apply (distinct
// sites) and finetune; a bfa path may flip bits of one parameter repeatedly.
enum class UndoOffsets { may_repeat, distinct };

// Optional record of what a trial did (for --record-sites and tests).
struct SiteRecord {
  int64_t offset;
  float old_value;
  float new_value;
};

// Stored number formats of the tensors `scope` contains, in the order f32, f16, bf16, joined
// by '+': e.g. "f32", "bf16" or "f32+bf16" (the per-trial record /trials/stored_dtype).
std::string stored_types_in_scope(const std::vector<TensorInfo>& tensors, const Scope& scope);

// Per-model perturbation engine: caches per-tensor statistics of the unperturbed model and the
// magnitude ordering of each scope. One per (rank, model); not thread-safe.
class Perturber {
 public:
  Perturber(const Model& model, uint64_t job_seed, std::string model_name);

  // Number of in-scope parameters.
  int64_t scope_size(const Scope& scope);
  // Stored types of the in-scope tensors (stored_types_in_scope over the model's tensors).
  std::string scope_stored_types(const Scope& scope);

  // Sites of a trial: offsets into Model::values, site rank order.
  std::vector<int64_t> select_sites(const StrategySpec& strategy, int64_t k, int64_t seed);

  // Perturbs `k` sites of `model` in place and sets `undo` to what it touched. When `record`
  // is non-null it receives every site with old and new value, in site rank order. `undo` is
  // in site rank order too, unless the sites were visited in offset order (SiteVisits). Returns
  // how many sites now hold a different bit pattern (a zero written over a zero changes nothing).
  // Runs on the OpenMP threads; results do not depend on their number. Memory beyond `undo`
  // (and `record`) is O(1) per thread. On an error `undo` still lists every site with its old
  // value (some untouched), so restore is exact.
  int64_t apply(Model& model, const StrategySpec& strategy, int64_t k, int64_t seed,
                std::vector<Touched>& undo, std::vector<SiteRecord>* record = nullptr);

  // How apply visits a random strategy's sites. By rank (the plain reference): the i-th site
  // is permute(i), at a random address, so a large k spends its time on cache and TLB misses.
  // In offset order: every in-scope index x is visited in order and is a site when its rank
  // permute^-1(x) is below k (two passes over the scope unless k is all of it), so the
  // values are read and written sequentially. Both write the same value at the same site;
  // automatic takes offset order from k >= n_scope / offset_order_from on, without a record.
  enum class SiteVisits { automatic, by_rank, in_offset_order };
  static constexpr int64_t offset_order_from = 2;
  void set_site_visits(SiteVisits visits) { visits_ = visits; }

  // Makes `donor` (a second checkpoint of the same architecture, called `name` in the job) the
  // source of `delta from=name` values. Throws InputError unless its tensors have the model's
  // names, shapes and stored formats. `donor` must outlive the Perturber.
  void add_donor(const std::string& name, const Model& donor);

  // Saliency sources of the unperturbed model, Model::values-sized: the gradient of an
  // objective (by Objective::canonical) for taylor and finetune sites=taylor, the input norms
  // for wanda. Set before the first trial of such a strategy.
  void add_gradient(const std::string& objective, std::vector<float> gradient);
  void add_input_norms(std::vector<float> input_norms);
  const std::vector<float>* gradient(const std::string& objective) const;  // nullptr: none yet
  bool has_input_norms() const { return !input_norms_.empty(); }

  // Writes the touched values back bitwise, as if in reverse order: an offset logged more than
  // once gets the value from before its first change. With distinct offsets the entries are
  // independent and the OpenMP threads write them in parallel.
  static void restore(Model& model, const std::vector<Touched>& undo,
                      UndoOffsets offsets = UndoOffsets::may_repeat);

  // Key texts (documented in rng.hpp's mirror): sites and values streams of a trial.
  std::string sites_key_text(const Scope& scope, int64_t seed) const;
  std::string values_key_text(const StrategySpec& strategy, int64_t seed) const;

 private:
  struct TensorStats {
    float min = 0, max = 0;  // over finite values
    double std = 0;          // population std over finite values
  };
  struct ScopeIndex {
    std::vector<int32_t> tensor_ids;  // (n_in_scope_tensors) model tensor indices, file order
    std::vector<int64_t> prefix;      // (n_in_scope_tensors + 1) in-scope elements before each
    // Where slot_of starts: the slot (position in tensor_ids) holding in-scope index
    // b << bucket_shift, for each bucket b of 2^bucket_shift indices.
    int bucket_shift = 0;
    std::vector<int32_t> bucket_slot;  // ((n_scope - 1) >> bucket_shift + 1)
    // Offsets sorted by a ranking's score, descending (NaN first), ties by lower offset, built
    // lazily per ranking: "magnitude", "wanda", "delta:MODEL", "taylor:LABEL", "gradient:OBJ".
    std::map<std::string, std::vector<int64_t>> ranked;
  };
  // The sites of one trial by rank, for site_offsets: a ranking's prefix (deterministic
  // strategies) or the keyed permutation of the scope's in-scope index space. Immutable.
  struct SiteSource {
    const ScopeIndex* index = nullptr;
    const std::vector<int64_t>* ranked = nullptr;  // deterministic: the ranking; else null
    std::optional<KeyedPermutation> permutation;   // random with k > 0: the sites draw
  };
  SiteSource site_source(const StrategySpec& strategy, int64_t k, int64_t seed);
  // out[j] = offset of the site of rank first + j, 0 <= j < count (select_sites without the
  // vector: callers draw O(1)-sized ranges on many threads); tensors[j] = its tensor's index
  // in Model::tensors, unless `tensors` is null.
  void site_offsets(const SiteSource& source, int64_t first, int64_t count, int64_t* out,
                    int32_t* tensors = nullptr) const;
  // The slot of `index` (in-scope index) in `scope`: the last slot whose prefix is <= index,
  // found from its bucket (last_at_or_below over prefix is the plain reference).
  static size_t slot_of(const ScopeIndex& scope, int64_t index);
  // In place: in-scope indices -> offsets in Model::values; tensors[j] = each one's tensor
  // index in Model::tensors, unless `tensors` is null.
  void to_model_offsets(const ScopeIndex& scope, int64_t count, int64_t* indices,
                        int32_t* tensors) const;
  // Offsets of `index` sorted by `score` descending (NaN first), ties by lower offset.
  std::vector<int64_t> ranked_offsets(const ScopeIndex& index,
                                      const std::function<double(int64_t offset)>& score) const;
  // The ranking a targeted / delta-largest / finetune-taylor strategy selects by, built on
  // first use.
  const std::vector<int64_t>& ranking(ScopeIndex& index, const StrategySpec& strategy);
  const std::vector<float>& required_gradient(const Objective& objective) const;
  const Model& donor(const std::string& name) const;
  // Built on first use from the model's current values: apply() selects sites before it writes,
  // and every trial restores before the next, so these are always the unperturbed values.
  ScopeIndex& scope_index(const Scope& scope);
  // The values stream at one site rank, with its attempt-0 draws on lanes 1 and 2 computed
  // beforehand for a whole chunk (KeyedRng::u64_at; zero where the strategy draws none):
  // below(n), uniform01() and normal() are the stream's below(n, i, 1), uniform01(i, 1) and
  // normal(i, 1), bit for bit.
  struct SiteDraws {
    const KeyedRng& stream;
    uint64_t site_rank;
    uint64_t lane1, lane2;
    uint64_t below(uint64_t n) const { return stream.below_from(n, lane1, site_rank, 1); }
    double uniform01() const { return KeyedRng::uniform01_from(lane1); }
    double normal() const { return KeyedRng::normal_from(lane1, lane2); }
  };
  // New value of a site (at `offset`, in tensor `tensor`) in the tensor's stored format;
  // new_float32_value is the binary32 rule. per_value: the donor's values (delta) or the
  // gradient (taylor), Model::values-indexed.
  float new_value(const StrategySpec& strategy, const SiteDraws& draws, int64_t offset,
                  int32_t tensor, float old, const float* per_value) const;
  float new_float32_value(const StrategySpec& strategy, const SiteDraws& draws, int32_t tensor,
                          float old) const;
  int32_t tensor_of(int64_t offset) const;
  // apply's work on one chunk of sites (offsets, tensors and site ranks, `count` entries):
  // log() copies their old values into the undo log, write() their new values into `model`
  // (and `record`), returning how many changed bits.
  struct ChunkWriter;
  // apply's two ways through the sites (SiteVisits): `undo` (and `record`) hold k entries.
  int64_t write_by_rank(const SiteSource& source, int64_t k, const ChunkWriter& writer,
                        Touched* undo, SiteRecord* record) const;
  int64_t write_in_offset_order(const SiteSource& source, int64_t k, const ChunkWriter& writer,
                                Touched* undo) const;

  const Model& model_;
  uint64_t job_seed_;
  std::string model_name_;
  std::vector<TensorStats> stats_;                       // (n_tensors) of the unperturbed model
  std::vector<int64_t> tensor_offsets_;                  // (n_tensors) Model::values offsets
  std::map<std::string, ScopeIndex> scopes_;             // by Scope::canonical()
  std::map<std::string, const Model*> donors_;           // delta sources by model name
  std::map<std::string, std::vector<float>> gradients_;  // (n_values) per objective
  std::vector<float> input_norms_;                       // (n_values) wanda; empty: none
  SiteVisits visits_ = SiteVisits::automatic;
};

// Undoes a perturbation (Perturber::restore of `undo`, as it is when the scope ends) however
// the scope ends, normally or by an exception.
class RestoreOnExit {
 public:
  RestoreOnExit(Model& model, const std::vector<Touched>& undo,
                UndoOffsets offsets = UndoOffsets::may_repeat)
      : model_(model), undo_(undo), offsets_(offsets) {}
  ~RestoreOnExit() { Perturber::restore(model_, undo_, offsets_); }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  Model& model_;
  const std::vector<Touched>& undo_;
  UndoOffsets offsets_;
};

}  // namespace fracsweep
