"""The judge: a classifier trained only on real dataset images, never on model
outputs, that decides whether an edit worked.

For every label it predicts ``p(y_i = 1 | x)``; on datasets with known styles
(``synthetic_faces``) it also predicts each attribute's style, which is what
``style_coverage`` counts. A judge is cached on disk by dataset, image size
and training recipe, so that every model of a benchmark is judged by the same
judge.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np

from keras_csvae.io import write_json

JUDGE_VERSION = 1
MIN_STEPS = 3000


def is_one_hot(y):
    """True for a multi-class label one-hot encoded (digits, expressions)."""
    return y.shape[1] > 2 and bool(np.all(np.sum(y, axis=1) == 1))


def default_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_CSVAE_CACHE", Path.home() / ".cache" / "keras_csvae")) / "judges"


def build_judge(data_shape, num_labels, style_counts=(), seed=0):
    """A small CNN (or MLP for vectors) with a sigmoid head for the labels and a
    softmax head per styled attribute.

    Outputs: ``labels`` ``[n, k]`` logits, and ``style_i`` ``[n, S_i]`` logits.
    """
    keras.utils.set_random_seed(seed)
    x = keras.Input(shape=tuple(data_shape), name="x")
    h = x
    if len(data_shape) == 3:
        for filters in (32, 64, 128):
            h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(h)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
            h = keras.layers.MaxPooling2D(2, padding="same")(h)
        h = keras.layers.Flatten()(h)
    else:
        h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(128, activation="relu")(h)
    outputs = {"labels": keras.layers.Dense(num_labels, name="labels", dtype="float32")(h)}
    for i, count in enumerate(style_counts):
        outputs[f"style_{i}"] = keras.layers.Dense(count, name=f"style_{i}", dtype="float32")(h)
    return keras.Model(x, outputs, name="judge")


class Judge:
    """A trained judge. ``labels(x)`` → ``[n, k]`` 0/1; ``styles(x, i)`` → ``[n]`` style ids."""

    def __init__(self, model: keras.Model, accuracy: dict | None = None):
        self.model = model
        self.accuracy = accuracy or {}

    def _predict(self, x):
        x = np.asarray(x, np.float32)
        return self.model.predict(x, batch_size=512, verbose=0)

    def label_probabilities(self, x):
        return 1.0 / (1.0 + np.exp(-self._predict(x)["labels"]))

    def labels(self, x):
        return (self.label_probabilities(x) > 0.5).astype(np.int32)

    def labels_and_styles(self, x, attribute_index):
        """``(labels [n, k], style ids [n])`` in one pass."""
        out = self._predict(x)
        labels = (out["labels"] > 0).astype(np.int32)
        return labels, np.argmax(out[f"style_{attribute_index}"], axis=-1)

    @property
    def has_styles(self):
        return any(name.startswith("style_") for name in self.model.output_names)


def _masked_style_loss(y_true, logits):
    """Style cross-entropy on examples whose attribute is on (label ≥ 0)."""
    import tensorflow as tf

    y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    on = y_true >= 0
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(y_true, 0), logits)
    weights = tf.cast(on, losses.dtype)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def train_judge(
    x_train,
    y_train,
    x_test,
    y_test,
    styles_train=None,
    styles_test=None,
    epochs=8,
    seed=0,
    verbose=0,
    min_steps=MIN_STEPS,
):
    """Trains a judge on real images.

    Args:
      x_*: ``[n, *data_shape]``; y_*: ``[n, k]`` in {0, 1}.
      styles_*: optional ``[n, k]`` style ids (−1 where the attribute is off).

    Returns:
      ``Judge`` with ``accuracy`` on the test split: ``labels`` (mean over
      labels), ``per_label``, and ``styles`` (on examples with the attribute on).
    """
    style_counts = (
        () if styles_train is None else tuple(int(styles_train[:, i].max()) + 1 for i in range(y_train.shape[1]))
    )
    model = build_judge(x_train.shape[1:], y_train.shape[1], style_counts, seed)
    losses = {"labels": keras.losses.BinaryCrossentropy(from_logits=True)}
    targets = {"labels": y_train}
    for i in range(len(style_counts)):
        losses[f"style_{i}"] = _masked_style_loss
        targets[f"style_{i}"] = styles_train[:, i : i + 1]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses)
    # Small datasets (digits: 1,257 images) get more epochs: at least ~3,000 steps.
    epochs = max(epochs, int(np.ceil(min_steps * 64 / len(x_train))))
    model.fit(x_train, targets, batch_size=64, epochs=epochs, verbose=verbose, shuffle=True)
    judge = Judge(model)
    predicted = judge.labels(x_test)
    per_label = [float(np.mean(predicted[:, i] == y_test[:, i])) for i in range(y_test.shape[1])]
    accuracy = {"labels": float(np.mean(per_label)), "per_label": per_label}
    if is_one_hot(y_test):
        # Per-label accuracy of a one-hot label is ≥ (k−1)/k for free: report
        # how often the judge names the right class instead.
        hit = np.argmax(judge.label_probabilities(x_test), axis=1) == np.argmax(y_test, axis=1)
        accuracy["labels"] = float(np.mean(hit))
    if style_counts:
        style_accuracy = []
        for i in range(len(style_counts)):
            on = styles_test[:, i] >= 0
            _, styles = judge.labels_and_styles(x_test[on], i)
            style_accuracy.append(float(np.mean(styles == styles_test[on, i])))
        accuracy["styles"] = float(np.mean(style_accuracy))
        accuracy["per_attribute_styles"] = style_accuracy
    judge.accuracy = accuracy
    return judge


def _cache_path(key: dict, cache_dir, epochs) -> Path:
    cache_dir = Path(cache_dir or default_cache_dir())
    payload = json.dumps({**key, "version": JUDGE_VERSION, "epochs": epochs}, sort_keys=True).encode()
    return cache_dir / f"{key.get('dataset', 'judge')}-{hashlib.sha256(payload).hexdigest()[:16]}.keras"


def load_cached_judge(key: dict, cache_dir=None, epochs=8):
    """The judge cached for ``key``, or None if there is none (never trains)."""
    path = _cache_path(key, cache_dir, epochs)
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    model = keras.saving.load_model(path, custom_objects={"_masked_style_loss": _masked_style_loss}, compile=False)
    return Judge(model, json.loads(meta.read_text()))


def cached_judge(key: dict, make_data, cache_dir=None, epochs=8, verbose=0, min_steps=MIN_STEPS):
    """Loads the judge for ``key`` from the cache, or trains and stores it.

    Args:
      key: what identifies the judge (dataset, image size, sizes...).
      make_data: ``() -> (x_train, y_train, x_test, y_test, styles_train, styles_test)``.
    """
    judge = load_cached_judge(key, cache_dir, epochs)
    if judge is not None:
        return judge
    path = _cache_path(key, cache_dir, epochs)
    print(f"Training the judge for {key}, once: it is cached in {path.parent} ...", flush=True)
    judge = train_judge(*make_data(), epochs=epochs, verbose=verbose, min_steps=min_steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    judge.model.save(tmp)
    os.replace(tmp, path)
    write_json(path.with_suffix(".json"), judge.accuracy)
    return judge
