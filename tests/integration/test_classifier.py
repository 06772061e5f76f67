"""Sequential classifiers end to end: the built-in default sweep at 1, 2 and 3 ranks (bit-identical
rows), the trained MLPs' predictions reproduced by the engine on every evaluation example, a CNN
with fixed random weights checked against an independent numpy forward pass (baseline and a
perturbed trial), and bad models and data rejected with exit code 2 and one message."""
import json
import struct
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SOURCE_DIR

DEFAULT = SOURCE_DIR / "jobs" / "default"
ROW_FIELDS_THAT_VARY = {"wall_s", "rank"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_classifier_job(directory, model_json, inputs, labels, extra_eval="", sweep=None, name="clf"):
    sweep = sweep or "fractions = 0.01\nseeds = 0\nstrategy = zero"
    path = Path(directory) / f"{name}.ini"
    path.write_text(f"name = {name}\nseed = 3\n[models]\nmodel = m path={model_json}\n"
                    f"[eval]\ninputs = {inputs}\nlabels = {labels}\n{extra_eval}\n[sweep]\n{sweep}\n")
    return path


def run_ok(run_fracsweep, job, out, ranks=2):
    result = run_fracsweep(["run", job, "--out", out], ranks=ranks, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def baseline(out):
    with h5py.File(out, "r") as f:
        return {key: f["baseline"][key][0] for key in ("accuracy", "mean_nll", "positions", "nonfinite_positions")}


def trial_rows(out):
    with h5py.File(out, "r") as f:
        return {key: f["trials"][key][()] for key in f["trials"] if key not in ROW_FIELDS_THAT_VARY}


# --- the built-in default model

def test_default_sweep_is_identical_at_1_2_and_3_ranks(tmp_path, run_fracsweep):
    rows = {}
    for ranks in (1, 2, 3):
        out = tmp_path / f"default-{ranks}.h5"
        result = run_ok(run_fracsweep, SOURCE_DIR / "jobs" / "default.ini", out, ranks)
        rows[ranks] = trial_rows(out)
        assert "top-1 agreement with the unperturbed model" in result.stdout
    assert len(rows[1]["trial"]) == 1395
    for ranks in (2, 3):
        for key, values in rows[1].items():
            floats = values.dtype.kind == "f"
            assert np.array_equal(values, rows[ranks][key], equal_nan=floats), (ranks, key)
    # The unperturbed accuracy is scikit-learn's on the held-out split.
    labels = np.load(DEFAULT / "digits-test-labels.npy")
    predictions = np.load(DEFAULT / "sklearn-predictions.npy")
    assert baseline(tmp_path / "default-1.h5")["accuracy"] == pytest.approx(np.mean(labels == predictions), abs=0)
    # Perturbing every weight with bits=exponent-msb destroys the model: non-finite outputs.
    trials = rows[1]
    assert np.any(trials["nonfinite_positions"] > 0)
    assert np.all((trials["top1_agreement"] >= 0) & (trials["top1_agreement"] <= 1))


def test_default_model_agrees_with_sklearn_on_every_example(tmp_path, run_fracsweep):
    job = write_classifier_job(tmp_path, DEFAULT / "digits-mlp.json", DEFAULT / "digits-test-images.npy",
                               DEFAULT / "sklearn-predictions.npy", "input_divisor = 16")
    out = tmp_path / "agree.h5"
    run_ok(run_fracsweep, job, out, ranks=1)
    assert baseline(out)["positions"] == 450
    assert baseline(out)["accuracy"] == 1.0  # argmax = sklearn's prediction on all 450 examples


def test_training_script_reproduces_the_committed_default(tmp_path):
    """The split, the exported arrays and the description are exact; the weights depend on the
    BLAS sklearn trains with, so the regenerated model's held-out accuracy is compared instead."""
    printed = subprocess.run(["/usr/bin/python3", SOURCE_DIR / "scripts" / "train_default_model.py",
                              "--out", tmp_path], check=True, capture_output=True, text=True, timeout=120).stdout
    for name in ("digits-mlp.json", "digits-test-images.npy", "digits-test-labels.npy"):
        assert (tmp_path / name).read_bytes() == (DEFAULT / name).read_bytes(), name
    committed = np.mean(np.load(DEFAULT / "sklearn-predictions.npy") == np.load(DEFAULT / "digits-test-labels.npy"))
    regenerated = np.mean(np.load(tmp_path / "sklearn-predictions.npy") == np.load(tmp_path / "digits-test-labels.npy"))
    assert abs(regenerated - committed) <= 0.01, printed
    assert f"held-out accuracy {regenerated:.4f} on 450 examples" in printed


# --- an MLP trained on half of MNIST (needs ../shared)

def test_mnist_mlp_agrees_with_sklearn(tmp_path, shared_dir, run_fracsweep):
    mnist = shared_dir / "data" / "mnist"
    model_dir = tmp_path / "mnist-mlp"
    printed = subprocess.run(["/usr/bin/python3", SOURCE_DIR / "scripts" / "train_default_model.py",
                              "--mnist", mnist, "--out", model_dir],
                             check=True, capture_output=True, text=True, timeout=300).stdout
    images = mnist / "t10k-images-idx3-ubyte.gz"
    agree = write_classifier_job(tmp_path, model_dir / "mnist-mlp.json", images, model_dir / "sklearn-predictions.npy",
                                 "examples = 5000\ninput_divisor = 255", name="agree")
    run_ok(run_fracsweep, agree, tmp_path / "agree.h5")
    assert baseline(tmp_path / "agree.h5")["accuracy"] == 1.0
    truth = write_classifier_job(tmp_path, model_dir / "mnist-mlp.json", images, mnist / "t10k-labels-idx1-ubyte.gz",
                                 "examples = 5000\ninput_divisor = 255", name="truth")
    run_ok(run_fracsweep, truth, tmp_path / "truth.h5")
    accuracy = baseline(tmp_path / "truth.h5")["accuracy"]
    assert f"held-out accuracy {accuracy:.4f} on 5000 examples" in printed


# --- a CNN with fixed random weights against numpy

def conv2d(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]  # (n, c, oh, ow)
            y += np.einsum("ncyx,oc->noyx", patch, w[:, :, i, j])
    return y + (0 if b is None else b[None, :, None, None])


def pool(x, k, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - k) // k + 1, (w - k) // k + 1
    x = x[:, :, :oh * k, :ow * k].reshape(n, c, oh, k, ow, k)
    return reduce(x, axis=(3, 5))


def cnn_tensors(rng):
    t = {
        "conv1.weight": rng.normal(0, 0.4, (4, 2, 3, 3)), "conv1.bias": rng.normal(0, 0.1, 4),
        "bn1.weight": rng.uniform(0.5, 1.5, 4), "bn1.bias": rng.normal(0, 0.1, 4),
        "bn1.running_mean": rng.normal(0, 0.2, 4), "bn1.running_var": rng.uniform(0.5, 2, 4),
        "conv2.weight": rng.normal(0, 0.3, (6, 4, 3, 3)), "conv2.bias": rng.normal(0, 0.1, 6),
        "fc.weight": rng.normal(0, 0.3, (7, 6)), "fc.bias": rng.normal(0, 0.1, 7),
    }
    return {name: value.astype(np.float32) for name, value in t.items()}


CNN_LAYERS = [
    {"type": "conv2d", "weight": "conv1.weight", "bias": "conv1.bias", "stride": 1, "padding": 1},
    {"type": "batchnorm", "weight": "bn1.weight", "bias": "bn1.bias", "running_mean": "bn1.running_mean",
     "running_var": "bn1.running_var", "eps": 1e-5},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "weight": "conv2.weight", "bias": "conv2.bias", "stride": 2, "padding": 1},
    {"type": "relu"},
    {"type": "avgpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.25},
    {"type": "linear", "weight": "fc.weight", "bias": "fc.bias"},
    {"type": "softmax"},
]


def cnn_forward(t, x):
    """float64 numpy forward pass of CNN_LAYERS up to the logits (before the softmax)."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    y = conv2d(x, t["conv1.weight"], t["conv1.bias"], 1, 1)
    scale = t["bn1.weight"] / np.sqrt(t["bn1.running_var"] + 1e-5)
    y = (y - t["bn1.running_mean"][None, :, None, None]) * scale[None, :, None, None] + t["bn1.bias"][None, :, None, None]
    y = pool(np.maximum(y, 0), 2, np.max)                          # (n, 4, 6, 6)
    y = np.maximum(conv2d(y, t["conv2.weight"], t["conv2.bias"], 2, 1), 0)  # (n, 6, 3, 3)
    y = pool(y, 2, np.mean).reshape(len(x), -1)                     # (n, 6, 1, 1) -> (n, 6)
    return y @ t["fc.weight"].T + t["fc.bias"]


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.fixture
def cnn(tmp_path):
    rng = np.random.default_rng(20261126)
    tensors = cnn_tensors(rng)
    write_safetensors(tmp_path / "cnn.safetensors", tensors)
    (tmp_path / "cnn.json").write_text(json.dumps({
        "format": "fracsweep-sequential/1", "weights": "cnn.safetensors", "input": {"shape": [2, 12, 12]},
        "classes": 7, "layers": CNN_LAYERS}))
    images = rng.integers(0, 256, (64, 2, 12, 12), dtype=np.uint8)
    labels = rng.integers(0, 7, 64).astype(np.int64)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    mean, std = np.array([0.4, 0.6]), np.array([0.25, 0.5])
    x = (images / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    logits = cnn_forward(tensors, x)
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert np.min(top2[:, 1] - top2[:, 0]) > 1e-4  # no near-ties: float32 cannot flip an argmax
    return {"dir": tmp_path, "tensors": tensors, "labels": labels, "logits": logits,
            "scaling": "input_divisor = 255\ninput_mean = 0.4 0.6\ninput_std = 0.25 0.5"}


def test_cnn_matches_numpy(cnn, run_fracsweep):
    d = cnn["dir"]
    logits, labels = cnn["logits"], cnn["labels"]
    argmax = logits.argmax(axis=1)
    # Trial: zero every weight -> all logits 0 -> uniform distribution, argmax 0.
    job = write_classifier_job(d, d / "cnn.json", d / "images.npy", d / "labels.npy", cnn["scaling"],
                               "fractions = 1\nseeds = 0\nstrategy = zero")
    run_ok(run_fracsweep, job, d / "cnn.h5")
    base = baseline(d / "cnn.h5")
    log_p = log_softmax(logits)
    assert base["positions"] == 64
    assert base["accuracy"] == pytest.approx(np.mean(argmax == labels), abs=1e-12)
    assert base["mean_nll"] == pytest.approx(-np.mean(log_p[np.arange(64), labels]), rel=1e-5)
    with h5py.File(d / "cnn.h5", "r") as f:
        trial = {key: f["trials"][key][0] for key in f["trials"]}
    p = np.exp(log_p)
    kl = np.sum(p * log_p, axis=1) + np.log(7)  # KL(p || uniform)
    # fraction 1 of the default scope: every learned parameter, not the running statistics
    assert trial["k"] == trial["n_scope"] == sum(t.size for name, t in cnn["tensors"].items()
                                                 if ".running_" not in name)
    assert trial["top1_agreement"] == pytest.approx(np.mean(argmax == 0), abs=1e-12)
    assert trial["accuracy"] == pytest.approx(np.mean(labels == 0), abs=1e-12)
    assert trial["sdc_rate"] == pytest.approx(np.mean((argmax == labels) & (labels != 0)), abs=1e-12)
    assert trial["mean_kl"] == pytest.approx(np.mean(kl), rel=1e-5)
    assert trial["max_kl"] == pytest.approx(np.max(kl), rel=1e-5)
    assert trial["mean_nll"] == pytest.approx(np.log(7), rel=1e-6)

    np.save(d / "numpy-argmax.npy", argmax.astype(np.int32))
    agree = write_classifier_job(d, d / "cnn.json", d / "images.npy", d / "numpy-argmax.npy", cnn["scaling"],
                                 name="agree")
    run_ok(run_fracsweep, agree, d / "agree.h5", ranks=1)
    assert baseline(d / "agree.h5")["accuracy"] == 1.0


# --- batch-norm running statistics are buffers, not weights

RUNNING_STATS = ("bn1.running_mean", "bn1.running_var")


def test_default_scope_leaves_running_statistics_alone(cnn, run_fracsweep):
    """Gaussian noise on every weight (fraction 1, sigma = |w|) would drive running variances
    below -eps in about one case in six, and every output would be NaN; the default scope is
    the learned parameters, so outputs stay finite. include=*.running_var still reaches them."""
    d = cnn["dir"]
    learned = sum(t.size for name, t in cnn["tensors"].items() if name not in RUNNING_STATS)
    job = write_classifier_job(d, d / "cnn.json", d / "images.npy", d / "labels.npy", cnn["scaling"],
                               "fractions = 0.5 1\nseeds = 0-5\nstrategy = gaussian sigma=1 relative=abs\n"
                               "strategy = gaussian sigma=3 relative=absolute include=*.running_var",
                               name="noise")
    run_ok(run_fracsweep, job, d / "noise.h5")
    with h5py.File(d / "noise.h5", "r") as f:
        trials = {key: f["trials"][key][()] for key in ("strategy", "fraction", "k", "n_scope",
                                                          "nonfinite_positions", "positions")}
        scopes = [s.decode() for s in f["grid"]["strategy_scope"][()]]
        n_parameters = f["grid"]["model_n_parameters"][0]
    assert scopes == ["include=*;exclude=", "include=*.running_var;exclude="]
    assert n_parameters == learned  # the model's learned parameters; buffers are not counted
    default = np.array([not s.decode().endswith("]") for s in trials["strategy"]])
    assert default.sum() == 12 and (~default).sum() == 12
    assert np.all(trials["n_scope"][default] == learned)
    assert np.all(trials["k"][default & (trials["fraction"] == 1)] == learned)
    assert np.all(trials["nonfinite_positions"][default] == 0)  # finite at every fraction and seed
    # Explicitly included, the running variances are perturbed (4 values) and do break the model.
    assert np.all(trials["n_scope"][~default] == 4)
    assert np.any(trials["nonfinite_positions"][~default] > 0)


def test_inspect_marks_running_statistics_as_buffers(cnn, run_fracsweep):
    d = cnn["dir"]
    result = run_fracsweep(["inspect", d / "cnn.json", "--json"])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    roles = {t["name"]: t["role"] for t in info["tensors"]}
    assert {name for name, role in roles.items() if role == "buffer"} == set(RUNNING_STATS)
    assert roles["bn1.weight"] == roles["bn1.bias"] == roles["conv1.weight"] == "parameter"
    buffers = sum(cnn["tensors"][name].size for name in RUNNING_STATS)
    assert info["n_buffer_values"] == buffers == 8
    assert info["n_parameters"] == sum(t.size for t in cnn["tensors"].values()) - buffers
    assert info["n_values"] == info["n_parameters"] + info["n_buffer_values"]
    text = run_fracsweep(["inspect", d / "cnn.json"]).stdout
    row = next(line for line in text.splitlines() if line.startswith("bn1.running_var"))
    assert " buffer " in row
    assert f"{info['n_parameters']} parameters" in text and "8 buffer values in 2 buffer tensors" in text


def test_guided_strategies_respect_the_default_scope(cnn, run_fracsweep):
    """taylor, wanda, finetune and bfa rank or search by gradients and activations, which the
    running statistics have too; by default none of their sites is a buffer."""
    d = cnn["dir"]
    strategies = ["taylor", "wanda", "finetune steps=2", "finetune sites=random steps=2", "bfa",
                  "taylor include=*.running_*"]
    job = write_classifier_job(d, d / "cnn.json", d / "images.npy", d / "labels.npy", cnn["scaling"],
                               "fractions = 0.25\ncounts = 3\nseeds = 0\n"
                               + "".join(f"strategy = {text}\n" for text in strategies)
                               + "record_sites = " + " ".join(str(i) for i in range(12)), name="guided")
    run_ok(run_fracsweep, job, d / "guided.h5")
    with h5py.File(d / "guided.h5", "r") as f:
        labels = [s.decode() for s in f["grid"]["strategy"][()]]
        strategy_of_trial = f["trials"]["strategy_idx"][()]
        site_trials, site_tensors = f["sites"]["trial"][()], [s.decode() for s in f["sites"]["tensor"][()]]
        path_tensors = [s.decode() for s in f["paths"]["tensor"][()]]
    assert len(strategy_of_trial) == 12
    explicit = labels.index(next(label for label in labels if "running" in label))
    by_trial = dict(enumerate(strategy_of_trial))  # trial ids are 0..11 in this grid
    default_sites = [t for trial, t in zip(site_trials, site_tensors) if by_trial[trial] != explicit]
    assert default_sites and not set(default_sites) & set(RUNNING_STATS)
    assert path_tensors and not set(path_tensors) & set(RUNNING_STATS)  # bfa's searched flips
    explicit_sites = {t for trial, t in zip(site_trials, site_tensors) if by_trial[trial] == explicit}
    assert explicit_sites and explicit_sites <= set(RUNNING_STATS)


def test_scope_of_only_buffers_by_default_is_rejected(cnn, run_fracsweep):
    """A scope whose patterns leave only buffers matches nothing by default, and says why."""
    d = cnn["dir"]
    job = write_classifier_job(d, d / "cnn.json", d / "images.npy", d / "labels.npy", cnn["scaling"],
                               "fractions = 1\nseeds = 0\nstrategy = zero exclude=conv*,fc.*,bn1.weight,bn1.bias")
    out = d / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=1, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "matches no tensor" in result.stderr and "explicit include=" in result.stderr
    assert not out.exists()


# --- bad input: exit 2, one message naming the file, nothing written

def damaged_json(directory, mutate):
    description = json.loads((directory / "cnn.json").read_text())
    mutate(description)
    path = directory / "bad.json"
    path.write_text(json.dumps(description))
    return path


def set_layer(index, **changes):
    return lambda description: description["layers"][index].update(changes)


@pytest.mark.parametrize("case, fragments", [
    ("missing tensor", ["bad.json", "layers[0] (conv2d)", "conv9.weight", "is not in"]),
    ("shapes do not chain", ["bad.json", "layers[8] (linear)", "fc.weight", "expected 7x54"]),
    ("unknown layer", ["bad.json", "layers[2]", "unknown layer type 'swish'"]),
    ("transposed linear", ["bad.json", "layers[9] (linear)", "'fc.weight'", "transposed.safetensors",
                           "is (in, out) = (6, 7); this layer expects (out, in) = (7, 6): transpose it"]),
    ("input shape", ["images.npy", "2x12x12", "2x10x10"]),
    ("wrong magic", ["labels.idx", "not an IDX file"]),
    ("label count", ["labels.npy", "63 labels for 64 examples"]),
    ("label range", ["labels.npy", "outside the model's classes 0..6"]),
    ("too many examples", ["examples = 65", "holds 64 examples"]),
    ("image dimensions", ["images.idx", "examples have shape 12x12x2"]),
    ("truncated idx", ["short.idx", "file ends inside the data"]),
])
def test_bad_models_and_data_exit_2(cnn, run_fracsweep, case, fragments):
    d = cnn["dir"]
    model, inputs, labels, extra = d / "cnn.json", d / "images.npy", d / "labels.npy", cnn["scaling"]
    if case == "missing tensor":
        model = damaged_json(d, set_layer(0, weight="conv9.weight"))
    elif case == "shapes do not chain":
        model = damaged_json(d, lambda m: m["layers"].pop(6))  # no avgpool: fc sees 6x3x3 = 54
    elif case == "transposed linear":  # fc.weight saved (in, out), as a Keras-style exporter would
        write_safetensors(d / "transposed.safetensors", {**cnn["tensors"], "fc.weight": cnn["tensors"]["fc.weight"].T})
        model = damaged_json(d, lambda m: m.update(weights="transposed.safetensors"))
    elif case == "unknown layer":
        model = damaged_json(d, set_layer(2, type="swish"))
    elif case == "input shape":
        model = damaged_json(d, lambda m: m["input"].update(shape=[2, 10, 10]))
    elif case == "wrong magic":
        labels = d / "labels.idx"
        labels.write_bytes(b"\x08\x00\x00\x01" + b"\x00" * 68)
    elif case == "label count":
        np.save(d / "labels.npy", cnn["labels"][:63])
    elif case == "label range":
        bad = cnn["labels"].copy()
        bad[5] = 7
        np.save(d / "labels.npy", bad)
    elif case == "too many examples":
        extra += "\nexamples = 65"
    elif case == "image dimensions":
        inputs = d / "images.idx"
        inputs.write_bytes(b"\x00\x00\x08\x04" + struct.pack(">4I", 64, 12, 12, 2) + bytes(64 * 288))
    elif case == "truncated idx":
        inputs = d / "short.idx"
        inputs.write_bytes(b"\x00\x00\x08\x04" + struct.pack(">4I", 64, 2, 12, 12) + bytes(100))
    job = write_classifier_job(d, model, inputs, labels, extra)
    out = d / "out.h5"
    result = run_fracsweep(["run", job, "--out", out], ranks=2, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert not out.exists()
