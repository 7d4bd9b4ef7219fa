"""TrainConfig defaults and the training input pipeline (``dataset_for``)."""

import dataclasses

import numpy as np
import pytest

from helpers import compiled, tiny_csvae
from keras_csvae.data import registry
from keras_csvae.training import TrainConfig
from keras_csvae.training.train import compile_model, dataset_for


def test_steps_per_execution_defaults_per_dataset_and_leaves_the_digest_alone():
    roll = TrainConfig(dataset="swiss_roll").resolved()
    faces = TrainConfig(dataset="synthetic_faces").resolved()
    assert roll.steps_per_execution == 32 and faces.steps_per_execution == 1
    assert TrainConfig(dataset="swiss_roll", steps_per_execution=4).resolved().steps_per_execution == 4
    # Same steps, same result: a run may be resumed with another value.
    assert dataclasses.replace(roll, steps_per_execution=1).digest() == roll.digest()
    assert dataclasses.replace(roll, seed=1).digest() != roll.digest()
    with pytest.raises(ValueError, match="steps_per_execution must be ≥ 1"):
        TrainConfig(steps_per_execution=0).resolved()


def test_compiled_model_keeps_steps_per_execution_through_its_compile_config():
    config = TrainConfig(dataset="swiss_roll").resolved()
    model = compile_model(tiny_csvae(data_shape=(3,), num_labels=1), config)
    assert model.steps_per_execution == 32
    clone = tiny_csvae(data_shape=(3,), num_labels=1)
    clone.compile_from_config(model.get_compile_config())
    assert clone.steps_per_execution == 32


def test_image_batches_are_converted_after_shuffling_uint8():
    options = {"image_size": 32, "num_examples": 40}
    stored = registry.load_stored("synthetic_faces", "train", **options)
    assert stored.element_spec[0].dtype.name == "uint8"
    config = TrainConfig(dataset="synthetic_faces", batch_size=16, dataset_options=options).resolved()
    model = compiled(tiny_csvae(data_shape=(32, 32, 3), num_labels=3))
    batches = list(dataset_for(config, model, "train", shuffle=False).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [16, 16, 8]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    expected_x, expected_y = registry.load_arrays("synthetic_faces", "train", **options)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)
    # Shuffled: the same examples in another order.
    shuffled = np.concatenate([b[0] for b in dataset_for(config, model, "train", shuffle=True).as_numpy_iterator()])
    assert not np.array_equal(shuffled, x)
    np.testing.assert_allclose(np.sort(shuffled.mean(axis=(1, 2, 3))), np.sort(x.mean(axis=(1, 2, 3))), rtol=1e-6)
