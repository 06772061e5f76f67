#define BOOST_TEST_MODULE job
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fracsweep/config/job.hpp"
#include "fracsweep/util/error.hpp"
#include "shared_data.hpp"

namespace fs = std::filesystem;
using fracsweep::Amount;
using fracsweep::InputError;
using fracsweep::JobConfig;
using fracsweep::log_spaced;
using fracsweep::parse_job_file;

namespace {

// The source tree's jobs/ directory (this file is tests/unit/test_job.cpp).
fs::path jobs_dir() {
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "jobs";
}

// Where the shipped job files point: ../../shared from jobs/, i.e. the repo's sibling shared/.
std::string shipped_shared(const std::string& relative) {
  return (jobs_dir() / "../../shared" / relative).lexically_normal().string();
}

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A temporary directory with dummy model, tokenizer and eval files (content is not checked by
// the job parser), removed on destruction.
struct TempJobDir {
  fs::path root;
  TempJobDir() {
    std::string pattern = (fs::temp_directory_path() / "fracsweep-job-XXXXXX").string();
    BOOST_TEST_REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root = pattern;
    write_file(root / "model.bin", "model");
    write_file(root / "tok.bin", "tokenizer");
    write_file(root / "eval.txt", "One paragraph.\n");
    write_file(root / "tokens.npy", "tokens");
    write_file(root / "probes.tsv", "probes");
  }
  ~TempJobDir() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
  TempJobDir(const TempJobDir&) = delete;
  TempJobDir& operator=(const TempJobDir&) = delete;

  // Writes `text` as a job file named `name` and returns its path.
  std::string job(const std::string& text, const std::string& name = "job.ini") const {
    write_file(root / name, text);
    return (root / name).string();
  }
};

constexpr const char* valid_models = "[models]\nmodel = m path=model.bin tokenizer=tok.bin\n";
constexpr const char* valid_eval = "[eval]\ntext = eval.txt\n";
constexpr const char* valid_sweep = "[sweep]\nfractions = 0.01\nseeds = 0-1\nstrategy = zero\n";

// A valid job assembled from parts, so each error case changes exactly one thing.
std::string job_text(const std::string& top = "name = t\n",
                     const std::string& models = valid_models, const std::string& eval = valid_eval,
                     const std::string& sweep = valid_sweep) {
  return top + models + eval + sweep;
}

// Parses `text` written to a temp dir; requires an InputError whose message names the job
// file, `key` and `detail`.
void check_rejected(const std::string& text, const std::string& key, const std::string& detail) {
  const TempJobDir dir;
  const std::string path = dir.job(text);
  BOOST_TEST_CONTEXT("job text:\n" << text) {
    try {
      parse_job_file(path);
      BOOST_ERROR("accepted a bad job file; expected an error naming '" << key << "'");
    } catch (const InputError& error) {
      const std::string message = error.what();
      BOOST_TEST_CONTEXT("message: " << message) {
        BOOST_TEST(message.find(path) != std::string::npos);
        BOOST_TEST(message.find(key) != std::string::npos);
        BOOST_TEST(message.find(detail) != std::string::npos);
      }
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(claims_job_parses,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const std::string path = (jobs_dir() / "stories260K-claims.ini").string();
  const JobConfig job = parse_job_file(path);
  BOOST_TEST(job.path == path);
  std::ifstream file(path);
  const std::string text{std::istreambuf_iterator<char>(file), {}};
  BOOST_TEST(job.text == text);
  BOOST_TEST(job.name == "stories260K-claims");
  BOOST_TEST(job.seed == 20261126u);

  BOOST_TEST_REQUIRE(job.models.size() == 1u);
  BOOST_TEST(job.models[0].name == "stories260K");
  BOOST_TEST(job.models[0].path == shipped_shared("models/stories260K/stories260K.bin"));
  BOOST_TEST(job.models[0].tokenizer_path == shipped_shared("models/stories260K/tok512.bin"));
  BOOST_TEST(job.eval_text == shipped_shared("data/tinystories/tinystories_val.txt"));
  BOOST_TEST(fs::equivalent(job.models[0].path,
                            fracsweep::test::shared_file("models/stories260K/stories260K.bin")));
  BOOST_TEST(job.eval_paragraphs == 50);
  BOOST_TEST(job.greedy_tokens == 256);
  BOOST_TEST(job.greedy_prompt == "");

  // fractions_log = 1e-5 0.25 3: 10^(n/3) decades (12 significant digits), then 0.25 exactly.
  const std::vector<double> expected_fractions = {1e-5, 2.15443469003e-5, 4.64158883361e-5,
                                                  1e-4, 2.15443469003e-4, 4.64158883361e-4,
                                                  1e-3, 2.15443469003e-3, 4.64158883361e-3,
                                                  1e-2, 2.15443469003e-2, 4.64158883361e-2,
                                                  1e-1, 2.15443469003e-1, 0.25};
  BOOST_TEST_REQUIRE(job.amounts.size() == expected_fractions.size());
  for (size_t i = 0; i < expected_fractions.size(); ++i) {
    BOOST_TEST(!job.amounts[i].is_count);
    BOOST_TEST(job.amounts[i].fraction == expected_fractions[i]);  // exact
  }

  const std::vector<std::string> expected_texts = {"zero",
                                                   "signflip",
                                                   "bitflip bits=sign",
                                                   "bitflip bits=exponent",
                                                   "bitflip bits=exponent-msb",
                                                   "bitflip bits=mantissa",
                                                   "bitflip bits=any",
                                                   "gaussian sigma=0.1 relative=abs",
                                                   "gaussian sigma=1 relative=std",
                                                   "magnitude then=zero",
                                                   "magnitude then=signflip",
                                                   "magnitude then=bitflip bits=exponent-msb"};
  BOOST_TEST(job.strategy_texts == expected_texts, boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(job.strategies.size() == expected_texts.size());
  for (size_t i = 0; i < job.strategies.size(); ++i) {
    BOOST_TEST(job.strategies[i].deterministic() == (i >= 9));
  }
  BOOST_TEST((job.strategies[4].kind == fracsweep::StrategyKind::bitflip));
  BOOST_TEST((job.strategies[4].bits == fracsweep::BitClass::exponent_msb));
  BOOST_TEST(job.strategies[8].sigma == 1.0);
  BOOST_TEST((job.strategies[8].relative_to == fracsweep::SigmaRelativeTo::std));

  BOOST_TEST(job.seeds == (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}),
             boost::test_tools::per_element());
  BOOST_TEST(job.record_sites.empty());
}

BOOST_AUTO_TEST_CASE(smoke_job_parses,
                     *boost::unit_test::precondition(fracsweep::test::needs_shared())) {
  const JobConfig job = parse_job_file((jobs_dir() / "stories260K-smoke.ini").string());
  BOOST_TEST(job.name == "stories260K-smoke");
  BOOST_TEST_REQUIRE(job.models.size() == 1u);
  BOOST_TEST(job.models[0].path == shipped_shared("models/stories260K/stories260K.bin"));
  BOOST_TEST(job.eval_text == shipped_shared("data/tinystories/tinystories_val.txt"));
  BOOST_TEST(job.eval_paragraphs == 10);
  BOOST_TEST(job.greedy_tokens == 32);
  BOOST_TEST_REQUIRE(job.amounts.size() == 4u);
  BOOST_TEST(job.amounts[0].fraction == 0.0001);
  BOOST_TEST(job.amounts[1].fraction == 0.001);
  BOOST_TEST(job.amounts[2].fraction == 0.01);
  BOOST_TEST(job.amounts[3].is_count);
  BOOST_TEST(job.amounts[3].count == 1);
  BOOST_TEST(job.seeds == (std::vector<int64_t>{0, 1}), boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(job.strategies.size() == 4u);
  int deterministic = 0;
  for (const auto& strategy : job.strategies) deterministic += strategy.deterministic() ? 1 : 0;
  BOOST_TEST(deterministic == 1);
}

BOOST_AUTO_TEST_CASE(log_spaced_values) {
  // One per decade: exact powers of ten, end points exact.
  BOOST_TEST(log_spaced(1e-3, 0.1, 1) == (std::vector<double>{0.001, 0.01, 0.1}),
             boost::test_tools::per_element());
  // sqrt(10) * 0.002 = 0.006324555320336759, rounded to 12 significant digits.
  BOOST_TEST(log_spaced(0.002, 0.01, 2) == (std::vector<double>{0.002, 0.00632455532034, 0.01}),
             boost::test_tools::per_element());
  // `to` off the grid: the points below it, then `to` itself.
  BOOST_TEST(log_spaced(1e-2, 0.05, 2) == (std::vector<double>{0.01, 0.0316227766017, 0.05}),
             boost::test_tools::per_element());
  // from == to: one point.
  BOOST_TEST(log_spaced(0.5, 0.5, 3) == (std::vector<double>{0.5}),
             boost::test_tools::per_element());
  // The end point is not duplicated when the last computed point lands on it.
  const std::vector<double> to_one = log_spaced(1e-4, 1.0, 4);
  BOOST_TEST(to_one.size() == 17u);
  BOOST_TEST(to_one.back() == 1.0);
  BOOST_TEST(to_one[4] == 1e-3);
  BOOST_TEST(to_one[15] == 0.562341325190);  // 10^-0.25
}

BOOST_AUTO_TEST_CASE(amount_sites_and_labels) {
  const Amount thousandth{.fraction = 0.001};
  BOOST_TEST(thousandth.sites(260032) == 260);              // 260.032
  BOOST_TEST(Amount{.fraction = 1e-5}.sites(260032) == 3);  // 2.60032
  BOOST_TEST(Amount{.fraction = 0.5}.sites(5) == 3);        // 2.5 rounds away from zero
  BOOST_TEST(Amount{.fraction = 0.25}.sites(2) == 1);       // 0.5 rounds away from zero
  BOOST_TEST(Amount{.fraction = 0.1}.sites(4) == 0);        // 0.4
  BOOST_TEST(Amount{.fraction = 1.0}.sites(7) == 7);
  BOOST_TEST(Amount{.fraction = 0.5}.sites(0) == 0);
  BOOST_TEST((Amount{.is_count = true, .count = 3}.sites(100)) == 3);
  BOOST_TEST((Amount{.is_count = true, .count = 8}.sites(5)) == 5);  // capped at the scope

  BOOST_TEST(thousandth.label() == "0.001");
  BOOST_TEST(Amount{.fraction = 0.25}.label() == "0.25");
  BOOST_TEST(Amount{.fraction = 1e-5}.label() == "1e-05");
  BOOST_TEST(Amount{.fraction = log_spaced(1e-5, 1e-4, 3)[1]}.label() == "2.15443469003e-05");
  BOOST_TEST((Amount{.is_count = true, .count = 8}.label()) == "count=8");
}

BOOST_AUTO_TEST_CASE(defaults_and_relative_paths) {
  const TempJobDir dir;
  // From sub/dir/, "../../model.bin" is the dummy model at the temp root.
  const std::string path = dir.job(
      "name = t\n[models]\nmodel = m path=../../model.bin tokenizer=./../../tok.bin\n"
      "[eval]\ntext = ../../eval.txt\n" +
          std::string(valid_sweep),
      "sub/dir/job.ini");
  const JobConfig job = parse_job_file(path);
  BOOST_TEST(job.models[0].path == (dir.root / "model.bin").string());
  BOOST_TEST(job.models[0].tokenizer_path == (dir.root / "tok.bin").string());
  BOOST_TEST(job.eval_text == (dir.root / "eval.txt").string());
  BOOST_TEST(job.seed == 0u);
  BOOST_TEST(job.eval_paragraphs == 50);
  BOOST_TEST(job.greedy_tokens == 256);
  BOOST_TEST(job.greedy_prompt == "");
  BOOST_TEST(job.record_sites.empty());
  BOOST_TEST(job.strategy_texts == (std::vector<std::string>{"zero"}),
             boost::test_tools::per_element());
  BOOST_TEST(job.seeds == (std::vector<int64_t>{0, 1}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(every_key_is_read) {
  const TempJobDir dir;
  const JobConfig job = parse_job_file(dir.job(
      "name = all.keys_1\nseed = 18446744073709551615\n" + std::string(valid_models) +
      "model = other path=" + (dir.root / "model.bin").string() +
      " tokenizer=tok.bin\n"
      "[eval]\ntext = eval.txt\nparagraphs = 7\ngreedy_tokens = 0\n"
      "greedy_prompt = Once upon a time   # trailing comment\n"
      "[sweep]\nfractions = 0.01 0.001 0.01\nfractions_log = 1e-3 1e-2 1\ncounts = 8 1\n"
      "seeds = 4-6 0 10\nstrategy = zero\nstrategy = signflip\nstrategy = magnitude then=zero\n"
      "record_sites = 17 0\n"));
  BOOST_TEST(job.name == "all.keys_1");
  BOOST_TEST(job.seed == 18446744073709551615u);
  BOOST_TEST_REQUIRE(job.models.size() == 2u);
  BOOST_TEST(job.models[1].name == "other");
  BOOST_TEST(job.models[1].path == (dir.root / "model.bin").string());
  BOOST_TEST(job.eval_paragraphs == 7);
  BOOST_TEST(job.greedy_tokens == 0);
  BOOST_TEST(job.greedy_prompt == "Once upon a time");
  // Fractions ascending without exact duplicates (0.001 and 0.01 appear in both keys), then
  // counts ascending.
  BOOST_TEST_REQUIRE(job.amounts.size() == 4u);
  BOOST_TEST(job.amounts[0].fraction == 0.001);
  BOOST_TEST(job.amounts[1].fraction == 0.01);
  BOOST_TEST((job.amounts[2].is_count && job.amounts[2].count == 1));
  BOOST_TEST((job.amounts[3].is_count && job.amounts[3].count == 8));
  BOOST_TEST(job.seeds == (std::vector<int64_t>{4, 5, 6, 0, 10}), boost::test_tools::per_element());
  BOOST_TEST(job.strategies.size() == 3u);
  // Grid: 2 models x (2 random x 4 amounts x 5 seeds + 1 x 4) = 88 trials; ids sorted.
  BOOST_TEST(job.record_sites == (std::vector<int64_t>{0, 17}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(environment_variables_in_paths) {
  const TempJobDir dir;
  BOOST_TEST_REQUIRE(setenv("FRACSWEEP_TEST_JOB_DIR", dir.root.c_str(), 1) == 0);
  BOOST_TEST_REQUIRE(setenv("FRACSWEEP_TEST_EVAL", "eval", 1) == 0);
  const JobConfig job = parse_job_file(
      dir.job(job_text("name = t\n",
                       "[models]\nmodel = m path=${FRACSWEEP_TEST_JOB_DIR}/model.bin "
                       "tokenizer=${FRACSWEEP_TEST_JOB_DIR}/./tok.bin\n",
                       "[eval]\ntext = ${FRACSWEEP_TEST_EVAL}.txt\n")));
  BOOST_TEST(job.models[0].path == (dir.root / "model.bin").string());
  BOOST_TEST(job.models[0].tokenizer_path == (dir.root / "tok.bin").string());
  BOOST_TEST(job.eval_text == (dir.root / "eval.txt").string());

  unsetenv("FRACSWEEP_TEST_UNSET_VARIABLE");
  check_rejected(job_text("name = t\n", valid_models,
                          "[eval]\ntext = ${FRACSWEEP_TEST_UNSET_VARIABLE}/eval.txt\n"),
                 "eval.text", "FRACSWEEP_TEST_UNSET_VARIABLE");
  check_rejected(job_text("name = t\n",
                          "[models]\nmodel = m path=${FRACSWEEP_TEST_UNSET_VARIABLE}/m.bin "
                          "tokenizer=tok.bin\n"),
                 "models.model", "FRACSWEEP_TEST_UNSET_VARIABLE");
  check_rejected(job_text("name = t\n", valid_models, "[eval]\ntext = ${FRACSWEEP_TEST_EVAL\n"),
                 "eval.text", "closing");
}

BOOST_AUTO_TEST_CASE(parse_job_text_resolves_against_the_given_path) {
  const TempJobDir dir;
  const std::string path = (dir.root / "not-written.ini").string();
  const std::string text = job_text();
  const JobConfig job = fracsweep::parse_job_text(text, path);
  BOOST_TEST(job.path == path);
  BOOST_TEST(job.text == text);
  BOOST_TEST(job.models[0].path == (dir.root / "model.bin").string());
}

BOOST_AUTO_TEST_CASE(echo_names_every_axis) {
  const TempJobDir dir;
  const JobConfig job = parse_job_file(
      dir.job(job_text("name = echo-test\nseed = 42\n", valid_models,
                       "[eval]\ntext = eval.txt\nparagraphs = 5\ngreedy_tokens = 16\n",
                       "[sweep]\nfractions = 0.001 0.25\ncounts = 8\nseeds = 0-9 12\n"
                       "strategy = zero\nstrategy = magnitude then=zero\n")));
  const std::string echo = fracsweep::echo_job(job);
  BOOST_TEST_CONTEXT("echo:\n" << echo) {
    for (const std::string& expected :
         {std::string("echo-test"), std::string("job seed 42"),
          "m: " + (dir.root / "model.bin").string(), (dir.root / "tok.bin").string(),
          "first 5 paragraphs of " + (dir.root / "eval.txt").string(),
          std::string("16 tokens from BOS"), std::string("amounts (3): 0.001 0.25 count=8"),
          job.strategies[0].canonical(), job.strategies[1].canonical(),
          std::string("seeds (11): 0-9 12")}) {
      BOOST_TEST(echo.find(expected) != std::string::npos, "missing '" << expected << "'");
    }
  }
}

BOOST_AUTO_TEST_CASE(missing_job_file) {
  const TempJobDir dir;
  const std::string path = (dir.root / "absent.ini").string();
  BOOST_CHECK_EXCEPTION(parse_job_file(path), InputError, [&](const InputError& error) {
    const std::string message = error.what();
    return message.find(path) != std::string::npos &&
           message.find("does not exist") != std::string::npos;
  });
  BOOST_CHECK_EXCEPTION(
      parse_job_file(dir.root.string()), InputError, [&](const InputError& error) {
        return std::string(error.what()).find(dir.root.string()) != std::string::npos;
      });
}

BOOST_AUTO_TEST_CASE(key_errors) {
  check_rejected(job_text() + "paragraph = 3\n", "sweep.paragraph", "unknown key");
  check_rejected(job_text("name = t\n", valid_models, "[eval]\ntext = eval.txt\nparagrahps = 3\n"),
                 "eval.paragrahps", "paragraphs");  // lists the keys of [eval]
  check_rejected(job_text() + "[sweeps]\nseeds = 1\n", "sweeps.seeds", "unknown key");
  check_rejected(job_text("name = t\nname = u\n"), "name", "more than once");
  check_rejected(job_text("name = t\n= 3\n"), "key", "no key");
  check_rejected(job_text("name = t\nthis line has no equals sign\n"), "invalid line",
                 "this line has no equals sign");
}

BOOST_AUTO_TEST_CASE(missing_required_keys) {
  check_rejected(job_text(""), "name", "missing required key");
  check_rejected(job_text("name = t\n", ""), "models.model", "missing required key");
  check_rejected(job_text("name = t\n", valid_models, "[eval]\nparagraphs = 3\n"), "eval.text",
                 "missing required key");
  check_rejected(
      job_text("name = t\n", valid_models, valid_eval, "[sweep]\nfractions = 0.01\nseeds = 0\n"),
      "sweep.strategy", "missing required key");
  check_rejected(job_text("name = t\n", valid_models, valid_eval,
                          "[sweep]\nfractions = 0.01\nstrategy = zero\n"),
                 "sweep.seeds", "missing required key");
  check_rejected(
      job_text("name = t\n", valid_models, valid_eval, "[sweep]\nseeds = 0\nstrategy = zero\n"),
      "sweep.fractions", "no amounts");
}

BOOST_AUTO_TEST_CASE(bad_scalar_values) {
  check_rejected(job_text("name = my job\n"), "name", "[A-Za-z0-9._-]");
  check_rejected(job_text("name = t\nseed = abc\n"), "seed", "'abc'");
  check_rejected(job_text("name = t\nseed = -1\n"), "seed", "'-1'");
  check_rejected(job_text("name = t\nseed = 1 2\n"), "seed", "one value");
  check_rejected(
      job_text("name = t\n", valid_models, std::string(valid_eval) + "paragraphs = 1.5\n"),
      "eval.paragraphs", "'1.5'");
  check_rejected(job_text("name = t\n", valid_models, std::string(valid_eval) + "paragraphs = 0\n"),
                 "eval.paragraphs", ">= 1");
  check_rejected(
      job_text("name = t\n", valid_models, std::string(valid_eval) + "greedy_tokens = -1\n"),
      "eval.greedy_tokens", ">= 0");
}

BOOST_AUTO_TEST_CASE(bad_amounts) {
  const auto sweep = [](const std::string& amounts) {
    return job_text("name = t\n", valid_models, valid_eval,
                    "[sweep]\n" + amounts + "\nseeds = 0\nstrategy = zero\n");
  };
  check_rejected(sweep("fractions = 0.1 x"), "sweep.fractions", "'x'");
  check_rejected(sweep("fractions = 0.1 0"), "sweep.fractions", "'0'");
  check_rejected(sweep("fractions = 1.5"), "sweep.fractions", "'1.5' is outside (0, 1]");
  check_rejected(sweep("fractions = -0.1"), "sweep.fractions", "'-0.1'");
  check_rejected(sweep("fractions = nan"), "sweep.fractions", "'nan'");
  check_rejected(sweep("fractions ="), "sweep.fractions", "empty");
  check_rejected(sweep("counts = 0"), "sweep.counts", "below 1");
  check_rejected(sweep("counts = 2.5"), "sweep.counts", "'2.5'");
  check_rejected(sweep("fractions_log = 0.1 0.01 3"), "sweep.fractions_log", "larger than");
  check_rejected(sweep("fractions_log = 0.001 0.1 0"), "sweep.fractions_log", ">= 1");
  check_rejected(sweep("fractions_log = 0.001 0.1"), "sweep.fractions_log", "three values");
  check_rejected(sweep("fractions_log = 0 0.1 3"), "sweep.fractions_log", "'0'");
  check_rejected(sweep("fractions_log = 0.001 2 3"), "sweep.fractions_log", "'2'");
}

BOOST_AUTO_TEST_CASE(llama2c_tokenizer_needed_only_to_encode_text) {
  const std::string no_tokenizer = "[models]\nmodel = m path=model.bin\n";
  const TempJobDir dir;
  // Pre-tokenized evaluation alone encodes no text.
  const JobConfig job = parse_job_file(dir.job(
      job_text("name = t\n", no_tokenizer, "[eval]\ntokens = tokens.npy\ngreedy_tokens = 4\n")));
  BOOST_TEST(job.models.at(0).tokenizer_path.empty());
  BOOST_TEST(job.eval_tokens == (dir.root / "tokens.npy").string());
  // [eval] tokens replaces [eval] text.
  BOOST_CHECK_NO_THROW(parse_job_file(dir.job(
      job_text("name = t\n", no_tokenizer, "[eval]\ntext = eval.txt\ntokens = tokens.npy\n"))));
  check_rejected(job_text("name = t\n", no_tokenizer,
                          "[eval]\ntokens = tokens.npy\ngreedy_prompt = Once upon\n"),
                 "models.model",
                 "model 'm' has no tokenizer=FILE, which a llama2.c model needs for "
                 "[eval] greedy_prompt");
  check_rejected(
      job_text("name = t\n", no_tokenizer, "[eval]\ntokens = tokens.npy\nprobes = probes.tsv\n"),
      "models.model", "needs for [eval] probes");
  check_rejected(job_text("name = t\n", no_tokenizer), "models.model",
                 "needs for [eval] text (or give pre-tokenized [eval] tokens)");
}

BOOST_AUTO_TEST_CASE(bad_seeds) {
  const auto sweep = [](const std::string& seeds) {
    return job_text("name = t\n", valid_models, valid_eval,
                    "[sweep]\nfractions = 0.1\nseeds = " + seeds + "\nstrategy = zero\n");
  };
  check_rejected(sweep("0-4 3"), "sweep.seeds", "seed 3 is listed twice");
  check_rejected(sweep("1 1"), "sweep.seeds", "seed 1 is listed twice");
  check_rejected(sweep("5-2"), "sweep.seeds", "'5-2' runs backwards");
  check_rejected(sweep("1-x"), "sweep.seeds", "'x'");
  check_rejected(sweep("-1"), "sweep.seeds", "seed -1 is negative");
  check_rejected(sweep("-3-2"), "sweep.seeds", "negative");
  check_rejected(sweep(""), "sweep.seeds", "empty");
}

BOOST_AUTO_TEST_CASE(bad_models) {
  const auto models = [](const std::string& lines) {
    return job_text("name = t\n", "[models]\n" + lines);
  };
  check_rejected(models("model = m path=model.bin tokenizer=tok.bin\n"
                        "model = m path=model.bin tokenizer=tok.bin\n"),
                 "models.model", "'m' is used twice");
  check_rejected(models("model = m tokenizer=tok.bin\n"), "models.model", "no path");
  check_rejected(models("model = m path=model.bin\n"), "models.model",
                 "model 'm' has no tokenizer=FILE, which a llama2.c model needs for [eval] text");
  check_rejected(models("model = m path=model.bin tokenizer=tok.bin format=onnx\n"), "models.model",
                 "format 'onnx' is not one of");
  check_rejected(models("model = m path=model.bin tokenizer=tok.bin colour=red\n"), "models.model",
                 "'colour=red'");
  check_rejected(models("model = m path=model.bin path=model.bin tokenizer=tok.bin\n"),
                 "models.model", "given twice");
  check_rejected(models("model = m|x path=model.bin tokenizer=tok.bin\n"), "models.model", "'m|x'");
  check_rejected(models("model = m path=absent.bin tokenizer=tok.bin\n"), "models.model",
                 "absent.bin' does not exist");
  check_rejected(models("model = m path=model.bin tokenizer=absent-tok.bin\n"), "models.model",
                 "absent-tok.bin' does not exist");
  // A directory is a Hugging Face model directory, which needs a config.json.
  check_rejected(models("model = m path=. tokenizer=tok.bin\n"), "models.model",
                 "config.json' does not exist");
  check_rejected(models("model = m path=model.bin tokenizer=tok.bin format=llama2c\n" +
                        std::string("model = n path=. format=hf\n")),
                 "models.model", "config.json");
}

BOOST_AUTO_TEST_CASE(bad_eval_files) {
  check_rejected(job_text("name = t\n", valid_models, "[eval]\ntext = absent.txt\n"), "eval.text",
                 "absent.txt' does not exist");
  check_rejected(job_text("name = t\n", valid_models, "[eval]\ntext = .\n"), "eval.text",
                 "not a regular file");
}

// Skips under root, which reads files whatever their permissions.
struct not_root {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    boost::test_tools::assertion_result result(geteuid() != 0);
    if (!result) result.message() << "skipped: root can read a file without read permission";
    return result;
  }
};

BOOST_AUTO_TEST_CASE(unreadable_file, *boost::unit_test::precondition(not_root())) {
  const TempJobDir dir;
  fs::permissions(dir.root / "eval.txt", fs::perms::none);
  const std::string path = dir.job(job_text());
  BOOST_CHECK_EXCEPTION(parse_job_file(path), InputError, [](const InputError& error) {
    const std::string message = error.what();
    return message.find("eval.text") != std::string::npos &&
           message.find("cannot be read") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(bad_strategies_and_record_sites) {
  const auto sweep = [](const std::string& lines) {
    return job_text("name = t\n", valid_models, valid_eval,
                    "[sweep]\nfractions = 0.1 0.2\nseeds = 0-2\n" + lines);
  };
  check_rejected(sweep("strategy = gaussian sigma=0.1 relative=abs\n"
                       "strategy = gaussian relative=abs sigma=0.1\n"),
                 "sweep.strategy", "'gaussian relative=abs sigma=0.1' repeats");
  check_rejected(sweep("strategy = wobble\n"), "sweep.strategy", "wobble");
  // Grid: 1 model x 1 random strategy x 2 amounts x 3 seeds = 6 trials (ids 0..5).
  check_rejected(sweep("strategy = zero\nrecord_sites = 0 -1\n"), "sweep.record_sites",
                 "-1 is negative");
  check_rejected(sweep("strategy = zero\nrecord_sites = 2 2\n"), "sweep.record_sites",
                 "listed twice");
  check_rejected(sweep("strategy = zero\nrecord_sites = 6\n"), "sweep.record_sites", "0..5");
  check_rejected(sweep("strategy = zero\nrecord_sites = x\n"), "sweep.record_sites", "'x'");
  check_rejected(sweep("strategy = zero\nrecord_sites = 4-6\n"), "sweep.record_sites",
                 "trial id 6 is outside the grid (ids 0..5)");
  check_rejected(sweep("strategy = zero\nrecord_sites = 1-3 2\n"), "sweep.record_sites",
                 "trial id 2 is listed twice (in '2')");
  check_rejected(sweep("strategy = zero\nrecord_sites = 3-1\n"), "sweep.record_sites",
                 "'3-1' runs backwards");
  check_rejected(sweep("strategy = scale factor=1e300\n"), "sweep.strategy",
                 "factor = 1e300 is outside the float32 range");
  check_rejected(sweep("strategy = gaussian sigma=4e38\n"), "sweep.strategy",
                 "sigma = 4e38 is outside the float32 range");
  const TempJobDir dir;
  BOOST_TEST(parse_job_file(dir.job(sweep("strategy = zero\nrecord_sites = 5\n"))).record_sites ==
                 (std::vector<int64_t>{5}),
             boost::test_tools::per_element());
  // Ranges as in `seeds`, in any order: stored ascending.
  BOOST_TEST(
      parse_job_file(dir.job(sweep("strategy = zero\nrecord_sites = 5 0-2\n"))).record_sites ==
          (std::vector<int64_t>{0, 1, 2, 5}),
      boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(stated_limits_before_anything_is_built) {
  const auto sweep = [](const std::string& lines) {
    return job_text("name = t\n", valid_models, valid_eval, "[sweep]\n" + lines);
  };
  // One short line must not make the parser expand 10^8 seeds or 10^6 fractions per decade.
  check_rejected(sweep("fractions = 0.1\nseeds = 0-100000000\nstrategy = zero\n"), "sweep.seeds",
                 "'0-100000000' makes more than 1000000 seeds, the limit for one job");
  check_rejected(sweep("fractions_log = 1e-300 1 1000000\nseeds = 0\nstrategy = zero\n"),
                 "sweep.fractions_log", "more than 1000000 fractions");
  // 601 amounts x 20,000 seeds x 1 strategy = 12,020,000 trials > 10,000,000.
  check_rejected(
      sweep("fractions_log = 1e-6 1 100\nseeds = 0-19999\nstrategy = zero\n"), "sweep.seeds",
      "the grid has 12020000 trials (models 1 x strategies 1 x amounts 601 x seeds 20000");
  // The job text is copied into every results file: at most 1 MiB.
  check_rejected(job_text("name = t\n# " + std::string(1 << 20, 'x') + "\n"), "",
                 "more than the limit of 1048576");
}

BOOST_AUTO_TEST_CASE(many_strategies_are_checked_for_repeats_in_one_pass) {
  // 30,000 distinct strategies and a repeat of the first at the end: found and named (a
  // pairwise comparison of canonical texts would take minutes here).
  std::string lines = "fractions = 0.1\nseeds = 0\n";
  for (int i = 1; i <= 30000; ++i) lines += "strategy = gaussian sigma=" + std::to_string(i) + "\n";
  lines += "strategy = gaussian sigma=1.0\n";
  check_rejected(job_text("name = t\n", valid_models, valid_eval, "[sweep]\n" + lines),
                 "sweep.strategy", "'gaussian sigma=1.0' repeats 'gaussian sigma=1'");
}
