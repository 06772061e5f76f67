"""A character-level llama2.c model end to end: a tokenizer.bin of 68 pieces with no <0xXX> byte
pieces (the vocabulary of tests/unit/tokenizer_files.hpp) and a small random checkpoint of that
vocabulary, both written here with struct. `fracsweep run` on 2 ranks evaluates it on text, and
on the same paragraphs pre-tokenized without tokenizer= (identical rows); a character outside
the vocabulary, or a greedy prompt without a tokenizer, exits 2 with one message and writes
nothing."""
import math
import struct

import h5py
import numpy as np
import pytest

# ids: 0 <unk>, 1 BOS, 2 EOS, 3 " ", 4..29 a-z, 30..55 A-Z, 56..61 . , ! ? ' newline (score 0),
# then merges with their scores.
PIECES = ([b"<unk>", b"\n<s>\n", b"\n</s>\n", b" "] + [bytes([c]) for c in range(ord("a"), ord("z") + 1)]
          + [bytes([c]) for c in range(ord("A"), ord("Z") + 1)] + [bytes([c]) for c in b".,!?'\n"])
SCORES = [0.0] * len(PIECES)
for piece, score in [(b"th", -1), (b"he", -2), (b" t", -3), (b"the", -4), (b" the", -5), (b"in", -6)]:
    PIECES.append(piece)
    SCORES.append(float(score))
ID = {piece: i for i, piece in enumerate(PIECES)}
VOCAB = len(PIECES)
DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, SEQ_LEN = 16, 32, 2, 2, 1, 64

PARAGRAPHS = ["the cat sat on the mat.\nIt is thin!", "Tin hat, the end?",
              "in the thin heather", "Once upon a time there was a hen.", "What is this? It's the hen's."]

SWEEP = """[sweep]
fractions = 0.001 0.01 0.1
seeds = 0-1
strategy = zero
strategy = bitflip bits=any
strategy = gaussian sigma=0.5
"""
N_TRIALS = 3 * 3 * 2


def encode(text):
    """llama2.c's encode with BOS, for text of vocabulary characters: BOS, the dummy prefix " ",
    one piece per character, then merge the best-scoring adjacent pair (the first on ties)."""
    ids = [1, ID[b" "]] + [ID[c.encode()] for c in text]
    while True:
        best = None
        for i in range(len(ids) - 1):
            merged = ID.get(PIECES[ids[i]] + PIECES[ids[i + 1]])
            if merged is not None and (best is None or SCORES[merged] > SCORES[best[1]]):
                best = (i, merged)
        if best is None:
            return ids
        ids[best[0]:best[0] + 2] = [best[1]]


def decode(ids):
    """llama2.c's decode of a continuation from BOS: a leading space after BOS is dropped."""
    text, previous = b"", 1
    for i in ids:
        piece = PIECES[i]
        text += piece[1:] if previous == 1 and piece.startswith(b" ") else piece
        previous = i
    return text


def write_tokenizer(path):
    data = struct.pack("<i", max(len(p) for p in PIECES))
    for piece, score in zip(PIECES, SCORES):
        data += struct.pack("<fi", score, len(piece)) + piece
    path.write_bytes(data)


def write_model(path, seed=5):
    """llama2.c v0: 7 int32 header fields, then float32 tok_embeddings, per-kind layer stacks,
    rms_final and a (unused) freq_cis block; positive vocab_size: the classifier is shared."""
    rng = np.random.default_rng(seed)
    kv_dim = KV_HEADS * DIM // HEADS

    def matrix(*shape):
        return rng.uniform(-1, 1, shape) / math.sqrt(shape[-1])

    def norm(*shape):
        return 1 + rng.uniform(-0.2, 0.2, shape)

    parts = [8 * matrix(VOCAB, DIM), norm(LAYERS, DIM), matrix(LAYERS, DIM, DIM), matrix(LAYERS, kv_dim, DIM),
             matrix(LAYERS, kv_dim, DIM), matrix(LAYERS, DIM, DIM), norm(LAYERS, DIM),
             matrix(LAYERS, HIDDEN, DIM), matrix(LAYERS, DIM, HIDDEN), matrix(LAYERS, HIDDEN, DIM), norm(DIM),
             np.zeros(SEQ_LEN * DIM // HEADS)]
    floats = np.concatenate([p.ravel() for p in parts])
    path.write_bytes(struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ_LEN)
                     + struct.pack(f"<{floats.size}f", *floats))


@pytest.fixture
def char_files(tmp_path):
    write_tokenizer(tmp_path / "char-tok.bin")
    write_model(tmp_path / "char.bin")
    (tmp_path / "eval.txt").write_text("\n\n".join(PARAGRAPHS) + "\n")
    rows = [encode(p) for p in PARAGRAPHS]
    tokens = np.full((len(rows), max(map(len, rows))), -1, dtype="<i4")
    for r, row in enumerate(rows):
        tokens[r, :len(row)] = row
    np.save(tmp_path / "tokens.npy", tokens)
    return tmp_path


def run_job(run_fracsweep, directory, model_line, eval_lines, out_name, ranks=2):
    job = directory / f"{out_name}.ini"
    job.write_text(f"name = char\nseed = 3\n[models]\n{model_line}\n[eval]\n{eval_lines}\n{SWEEP}")
    out = directory / f"{out_name}.h5"
    return job, out, run_fracsweep(["run", job, "--out", out], ranks=ranks, timeout=300)


def trial_rows(out):
    with h5py.File(out) as f:
        order = np.argsort(f["/trials/trial"][:])
        return f["/trials/trial"][:][order], f["/trials/mean_nll"][:][order]


def test_character_level_model_sweeps_on_text_and_on_tokens(char_files, run_fracsweep):
    d = char_files
    _, text_out, result = run_job(run_fracsweep, d, f"model = char path={d}/char.bin tokenizer={d}/char-tok.bin",
                                  f"text = {d}/eval.txt\nparagraphs = {len(PARAGRAPHS)}\ngreedy_tokens = 8",
                                  "text")
    assert result.returncode == 0, result.stderr
    with h5py.File(text_out) as f:
        assert f["/baseline/positions"][0] == sum(len(encode(p)) - 1 for p in PARAGRAPHS)
        assert math.isfinite(f["/baseline/mean_nll"][0])
        assert [m.decode() for m in f["/grid/model_format"][:]] == ["llama2c-v0"]
        greedy_ids = [i for i in f["/baseline/greedy_ids"][0] if i >= 0]
        assert f["/baseline/greedy_text"][0] == decode(greedy_ids)
    # The same paragraphs pre-tokenized, no tokenizer=: the same baseline and trial rows, bitwise.
    _, tokens_out, result = run_job(run_fracsweep, d, f"model = char path={d}/char.bin",
                                    f"tokens = {d}/tokens.npy\ngreedy_tokens = 8", "tokens")
    assert result.returncode == 0, result.stderr
    with h5py.File(text_out) as a, h5py.File(tokens_out) as b:
        for key in ["/baseline/positions", "/baseline/mean_nll"]:
            assert a[key][0] == b[key][0], key
        assert (a["/baseline/greedy_ids"][:] == b["/baseline/greedy_ids"][:]).all()
        assert b["/baseline/greedy_text"][0] == b""  # no tokenizer to decode it with
    text_ids, text_nll = trial_rows(text_out)
    tokens_ids, tokens_nll = trial_rows(tokens_out)
    assert len(text_ids) == N_TRIALS and (text_ids == tokens_ids).all()
    assert text_nll.tobytes() == tokens_nll.tobytes()


def assert_refused(result, directory, before, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr  # one message, not one per rank
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert sorted(directory.iterdir()) == before  # nothing written (but the job file)


def test_a_character_outside_the_vocabulary_is_refused(char_files, run_fracsweep):
    d = char_files
    (d / "accents.txt").write_text("the cat\n\nthe caf\u00e9 is thin\n")
    before = sorted(list(d.iterdir()) + [d / "accent.ini"])
    _, _, result = run_job(run_fracsweep, d, f"model = char path={d}/char.bin tokenizer={d}/char-tok.bin",
                           f"text = {d}/accents.txt\nparagraphs = 2\ngreedy_tokens = 8", "accent")
    assert_refused(result, d, before, f"{d}/accents.txt: paragraph 2: character \"\u00e9\" (U+00E9) is not in "
                                      "the tokenizer's vocabulary, which has no byte-fallback piece \"<0xC3>\"")


def test_a_greedy_prompt_needs_the_tokenizer(char_files, run_fracsweep):
    d = char_files
    before = sorted(list(d.iterdir()) + [d / "prompt.ini"])
    job, _, result = run_job(run_fracsweep, d, f"model = char path={d}/char.bin",
                             f"tokens = {d}/tokens.npy\ngreedy_prompt = Once", "prompt")
    assert_refused(result, d, before, str(job), "models.model",
                   "model 'char' has no tokenizer=FILE, which a llama2.c model needs for [eval] greedy_prompt")
