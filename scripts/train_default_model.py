#!/usr/bin/python3
"""Trains the small classifiers fracsweep ships examples for and exports them in the
sequential-classifier format (JSON description + safetensors, see README "Sequential
classifiers").

Default mode: the built-in default model, jobs/default/, needs nothing but Debian's
python3-sklearn. An MLP (64 -> 64 ReLU -> 10) is trained on scikit-learn's bundled handwritten
digits (load_digits: 1,797 8x8 images, pixel values 0..16) with a fixed seed and a stratified
held-out split of 25%; the held-out images (uint8, unscaled) and labels are written as .npy, so
the job declares `input_divisor = 16`. Re-running it reproduces the committed files.

--mnist DIR mode: the same recipe on the MNIST test set in DIR (t10k-images-idx3-ubyte.gz,
t10k-labels-idx1-ubyte.gz): trained on examples 5000..9999 (the second half of the file) and
evaluated on examples 0..4999 (the first half), so a job reads the original IDX files with
`examples = 5000` (jobs/mnist-mlp.ini). Written to jobs/mnist-mlp/ unless --out says otherwise.

Both modes also write sklearn-predictions.npy: scikit-learn's own predicted class for every
evaluation example, which the tests give the engine as labels (accuracy 1 = agreement on
every example).
"""
import argparse
import gzip
import json
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

REPO = Path(__file__).resolve().parents[1]
SEED = 20261126


def write_safetensors(path, tensors):
    """tensors: {name: float32 array}, written in the given order."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt", "producer": "fracsweep scripts/train_default_model.py"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def export_mlp(out_dir, stem, classifier, input_shape):
    """Writes STEM.safetensors and STEM.json for a fitted sklearn MLPClassifier (ReLU)."""
    tensors, layers = {}, [{"type": "flatten"}]
    for index, (weight, bias) in enumerate(zip(classifier.coefs_, classifier.intercepts_), start=1):
        tensors[f"fc{index}.weight"] = weight.T.astype(np.float32)  # sklearn stores (in, out)
        tensors[f"fc{index}.bias"] = bias.astype(np.float32)
        layers.append({"type": "linear", "weight": f"fc{index}.weight", "bias": f"fc{index}.bias"})
        if index < len(classifier.coefs_):
            layers.append({"type": "relu"})
    write_safetensors(out_dir / f"{stem}.safetensors", tensors)
    description = {"format": "fracsweep-sequential/1", "weights": f"{stem}.safetensors",
                   "input": {"shape": list(input_shape)}, "classes": int(len(classifier.classes_)),
                   "layers": layers}
    (out_dir / f"{stem}.json").write_text(json.dumps(description, indent=2) + "\n")


def fit(hidden, train_x, train_y, max_iter):
    classifier = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", solver="adam",
                               alpha=1e-4, max_iter=max_iter, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train_x, train_y)
    return classifier


def train_digits(out_dir):
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    train_images, test_images, train_y, test_y = train_test_split(
        images, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target)
    classifier = fit(64, train_images.reshape(len(train_images), -1) / 16.0, train_y, max_iter=400)
    predictions = classifier.predict(test_images.reshape(len(test_images), -1) / 16.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_mlp(out_dir, "digits-mlp", classifier, (1, 8, 8))
    np.save(out_dir / "digits-test-images.npy", test_images)                  # (450, 8, 8) uint8
    np.save(out_dir / "digits-test-labels.npy", test_y.astype(np.uint8))      # (450,)
    np.save(out_dir / "sklearn-predictions.npy", predictions.astype(np.uint8))
    return float(np.mean(predictions == test_y)), len(test_y)


def read_idx_gz(path):
    data = gzip.open(path, "rb").read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def train_mnist(mnist_dir, out_dir):
    images = read_idx_gz(Path(mnist_dir) / "t10k-images-idx3-ubyte.gz")  # (10000, 28, 28)
    labels = read_idx_gz(Path(mnist_dir) / "t10k-labels-idx1-ubyte.gz")  # (10000,)
    half = len(images) // 2
    flat = images.reshape(len(images), -1) / 255.0
    classifier = fit(64, flat[half:], labels[half:], max_iter=200)
    predictions = classifier.predict(flat[:half])
    out_dir.mkdir(parents=True, exist_ok=True)
    export_mlp(out_dir, "mnist-mlp", classifier, (1, 28, 28))
    np.save(out_dir / "sklearn-predictions.npy", predictions.astype(np.uint8))
    return float(np.mean(predictions == labels[:half])), half


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", metavar="DIR", help="train the MNIST-half MLP from DIR instead")
    parser.add_argument("--out", metavar="DIR", help="output directory (default jobs/default or jobs/mnist-mlp)")
    args = parser.parse_args()
    if args.mnist:
        out = Path(args.out) if args.out else REPO / "jobs" / "mnist-mlp"
        accuracy, n = train_mnist(args.mnist, out)
        what = "MNIST MLP (trained on t10k examples 5000..9999)"
    else:
        out = Path(args.out) if args.out else REPO / "jobs" / "default"
        accuracy, n = train_digits(out)
        what = "digits MLP"
    print(f"{what}: held-out accuracy {accuracy:.4f} on {n} examples; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
