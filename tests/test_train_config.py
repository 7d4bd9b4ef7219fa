"""TrainConfig defaults and the training input pipeline (``dataset_for``)."""

import dataclasses

import numpy as np
import pytest
from helpers import compiled, tiny_csvae

from keras_csvae.data import registry
from keras_csvae.training import TrainConfig
from keras_csvae.training.config import VALIDATION_EXAMPLES
from keras_csvae.training.presets import PRESETS, preset
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


# The digests of the resolved default configurations. A run resumes only with
# the digest it was started with, so a preset change must be deliberate.
DEFAULT_DIGESTS = {
    "celeba_facial_hair": "7f2769b2ce8cc8aa",
    "celeba_glasses": "a7d4c3f30ffb2188",
    "celeba_glasses_facial_hair": "fec5a71bd561a589",
    "digits": "6f94c78461cefb8c",
    "swiss_roll": "fd183ec32a3d935e",
    "synthetic_faces": "c6b647323b25e53e",
    "tfd": "5780da71b4bfcd0b",
}


def test_every_dataset_resolves_from_its_preset_to_a_fixed_digest():
    assert set(registry.names()) == set(PRESETS) == set(DEFAULT_DIGESTS)
    for name, digest in DEFAULT_DIGESTS.items():
        assert TrainConfig(dataset=name).resolved().digest() == digest, name
    # The edit strength is not trained: runs trained before the preset set it keep their digest.
    faces = TrainConfig(dataset="synthetic_faces").resolved()
    assert faces.model_kwargs["edit_strength"] == [1.0, 1.0, 5 / 3]  # one per label
    faces.model_kwargs.pop("edit_strength")
    assert faces.digest() == DEFAULT_DIGESTS["synthetic_faces"]
    faces = TrainConfig(dataset="synthetic_faces", model_kwargs={"z_dim": 4}).resolved()
    assert faces.epochs == 30 and faces.model_kwargs["z_dim"] == 4 and faces.model_kwargs["w_dim"] == 2
    # The config holds a copy: changing it leaves the preset alone.
    faces.model_kwargs["conv_filters"].append(128)
    assert preset("synthetic_faces").model["conv_filters"] == [16, 32, 64]


def test_edit_locality_changes_only_the_csvaes_digest():
    for model, changes in (("csvae", True), ("vae", False), ("condvae", False), ("condvae_info", False)):
        plain = TrainConfig(dataset="synthetic_faces", model=model, model_kwargs={"edit_locality": 0.0}).resolved()
        for kwargs in ({"edit_locality": 0.3}, {"edit_locality_saturation": 0.05}):
            local = TrainConfig(dataset="synthetic_faces", model=model, model_kwargs=kwargs).resolved()
            assert (plain.digest() != local.digest()) is changes, (model, kwargs)


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


@pytest.mark.parametrize("dataset", ["synthetic_faces", "swiss_roll"])  # streamed and in-memory
def test_validation_runs_on_the_first_validation_examples_and_leaves_the_digest_alone(dataset):
    options = {"image_size": 32, "num_examples": 40} if dataset == "synthetic_faces" else {}
    config = TrainConfig(dataset=dataset, batch_size=8, validation_examples=20, dataset_options=options).resolved()
    info = registry.info(dataset, **options)
    model = compiled(tiny_csvae(data_shape=info.input_shape, num_labels=info.num_labels))
    batches = list(dataset_for(config, model, "validation", shuffle=False, limit=20).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [8, 8, 4]
    whole_x, whole_y = registry.load_arrays(dataset, "validation", **options)
    assert len(whole_x) > 20
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), whole_x[:20])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), whole_y[:20])
    # Validation changes no weight: a run may be resumed validating more or less.
    assert dataclasses.replace(config, validation_examples=None).digest() == config.digest()
    assert TrainConfig(dataset=dataset).resolved().validation_examples == VALIDATION_EXAMPLES == 1024


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "all"])
def test_validation_examples_must_be_a_positive_integer_or_none(bad):
    with pytest.raises(ValueError, match="validation_examples must be a positive integer or None"):
        TrainConfig(validation_examples=bad).resolved()
    assert TrainConfig(validation_examples=None).resolved().validation_examples is None
