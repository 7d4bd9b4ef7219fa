"""The CSVAE model: training step, optimiser isolation, editing API, saving, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_changed, assert_unchanged, compiled, random_data, run_python, tiny_csvae, weights_of

from keras_csvae import CSVAE, InputError
from keras_csvae.models.csvae import METRIC_NAMES


@pytest.fixture
def mlp_model():
    return compiled(tiny_csvae(data_shape=(3,), num_labels=2))


def test_fit_reports_every_loss_term(mlp_model):
    x, y = random_data(64, (3,), 2)
    history = mlp_model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0).history
    for name in METRIC_NAMES:
        assert len(history[name]) == 2 and np.isfinite(history[name]).all()
        assert f"val_{name}" in history
    assert history["adversary_negative_entropy"][-1] <= 0


def test_each_optimiser_touches_only_its_own_weights(mlp_model):
    x, y = random_data(16, (3,), 2)
    data = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))
    model = mlp_model
    # Freeze one side by giving it a zero learning rate is not isolation; instead
    # run each half of the step by hand and compare the other side's weights.
    elbo_before = weights_of(model.elbo_variables)
    adversary_before = weights_of(model.adversary_variables)

    import tensorflow as tf

    with tf.GradientTape() as tape:
        terms, z, yy = model.loss_terms(*data, model.step_seed(0), training=True)
        loss = tf.reduce_mean(terms["loss"])
    model.apply_gradients(model.optimizer, tape, loss, model.elbo_variables)
    assert_changed(elbo_before, model.elbo_variables)
    assert_unchanged(adversary_before, model.adversary_variables)

    elbo_after = weights_of(model.elbo_variables)
    with tf.GradientTape() as tape:
        adversary_loss = tf.reduce_mean(model.adversary_loss(z, yy, training=True))
    model.apply_gradients(model.adversary_optimizer, tape, adversary_loss, model.adversary_variables)
    assert_changed(adversary_before, model.adversary_variables)
    assert_unchanged(elbo_after, model.elbo_variables)


def test_full_train_step_updates_both_sides_with_disjoint_variable_sets(mlp_model):
    elbo_ids = {id(v) for v in mlp_model.elbo_variables}
    adversary_ids = {id(v) for v in mlp_model.adversary_variables}
    assert elbo_ids.isdisjoint(adversary_ids)
    assert len(elbo_ids) + len(adversary_ids) == len(mlp_model.trainable_weights)
    x, y = random_data(16, (3,), 2)
    before = weights_of(mlp_model.trainable_weights)
    mlp_model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_changed(before[: len(elbo_ids)], mlp_model.trainable_weights[: len(elbo_ids)])
    assert mlp_model.optimizer.iterations.numpy() == 1
    assert mlp_model.adversary_optimizer.iterations.numpy() == 1


def test_optimiser_update_runs_as_one_xla_cluster_with_the_same_result():
    import tensorflow as tf

    fused, plain = (compiled(tiny_csvae(data_shape=(16, 16, 3), num_labels=2, seed=1)) for _ in range(2))
    for source, target in zip(fused.elbo_variables, plain.elbo_variables):
        target.assign(source)
    grads = [tf.random.normal(v.shape, stddev=1e-2, seed=i) for i, v in enumerate(fused.elbo_variables)]
    update = fused._fused_update(fused.optimizer, fused.elbo_variables)
    for _ in range(3):
        update(grads)
        tf.function(lambda: plain.optimizer.apply(grads, plain.elbo_variables))()
    assert update.experimental_get_tracing_count() == 1
    for a, b in zip(fused.elbo_variables, plain.elbo_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert fused.optimizer.iterations.numpy() == 3

    # fit uses it for both optimisers, and not when the whole step is XLA already.
    x, y = random_data(32, (16, 16, 3), 2)
    fused.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert len(fused.__dict__["_fused_updates"]) == 2
    xla = compiled(tiny_csvae(data_shape=(16, 16, 3), num_labels=2), jit_compile=True)
    xla.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert "_fused_updates" not in xla.__dict__


def test_numpy_api_runs_one_cached_graph_per_method():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=2)
    x, _ = random_data(7, (16, 16, 3), 2)
    edited = [model.manipulate(x[:n], [1, 0]) for n in (1, 3, 7, 7)]
    edit_graph = model.graph_function(model.edit_tensors)
    assert edit_graph is model.graph_function(model.edit_tensors)
    assert edit_graph.experimental_get_tracing_count() <= 2  # batch-generic after the second size
    # Same values as the Keras layers run eagerly.
    w = model.target_w(np.tile([[1, 0]], (7, 1)))
    np.testing.assert_allclose(edited[-1], model.edit_tensors(x, w).numpy(), atol=1e-6)
    np.testing.assert_allclose(edited[0], edited[-1][:1], atol=1e-6)
    assert model.graph_function(np.sum) is np.sum  # not a method of the model: run as given


def test_editing_api_shapes_and_rule():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=2)
    x, y = random_data(5, (16, 16, 3), 2)
    codes = model.encode(x, y)
    assert codes["z_mean"].shape == (5, model.z_dim) and codes["w_mean"].shape == (5, 4)
    assert model.reconstruct(x, y).shape == x.shape
    edited = model.manipulate(x, [1, 0])
    # The rule: z = E[z|x], w = prior mean of the target labels.
    expected = model.decode(codes["z_mean"], np.tile([[3.0, 3.0, 0.0, 0.0]], (5, 1)))
    np.testing.assert_allclose(edited, expected, atol=1e-6)
    # Deterministic by default, seeded when sampling.
    np.testing.assert_array_equal(model.manipulate(x, [1, 0]), edited)
    a = model.manipulate(x, [1, 0], sample=True, seed=3)
    np.testing.assert_array_equal(a, model.manipulate(x, [1, 0], sample=True, seed=3))
    assert not np.allclose(a, model.manipulate(x, [1, 0], sample=True, seed=4))


def test_switched_edit_keeps_the_other_labels_posterior_w_exactly():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=3)
    x, y = random_data(6, (16, 16, 3), 3, seed=1)
    y_target = y.copy()
    y_target[:, 1] = 1 - y[:, 1]  # switch label 1 only
    posterior = model.encode(x, y)
    codes = model.edited_codes(x, y_target, y=y)
    w, w_post = codes["w"].reshape(6, 3, 2), posterior["w_mean"].reshape(6, 3, 2)
    np.testing.assert_array_equal(w[:, [0, 2]], w_post[:, [0, 2]])  # untouched subspaces: bit for bit
    np.testing.assert_array_equal(w[:, 1], np.where(y_target[:, 1:2] == 1, 3.0, 0.0) * np.ones((6, 2)))
    np.testing.assert_array_equal(codes["z"], posterior["z_mean"])
    edited = model.manipulate(x, y_target, y=y)
    np.testing.assert_allclose(edited, model.decode(codes["z"], codes["w"]), atol=1e-6)
    # The graph the export uses computes the same edit.
    np.testing.assert_allclose(model.switched_edit_tensors(x, y, y_target).numpy(), edited, atol=1e-5)
    # Nothing switched: the edit is the reconstruction.
    np.testing.assert_allclose(model.manipulate(x, y, y=y), model.reconstruct(x, y), atol=1e-6)
    # The paper's rule stays selectable: every subspace at the target prior's mean.
    paper = model.edited_codes(x, y_target, y=y, rule="prior")["w"]
    np.testing.assert_array_equal(paper, model.target_w(y_target))
    with pytest.raises(InputError, match="needs the source labels"):
        model.manipulate(x, y_target, rule="switched")
    with pytest.raises(InputError, match="Unknown edit rule"):
        model.manipulate(x, y_target, y=y, rule="nope")


def test_edit_strength_moves_only_the_labels_switched_on_further():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=3, edit_strength=1.5)
    x, y = random_data(6, (16, 16, 3), 3, seed=2)
    y_target = y.copy()
    y_target[:, 0] = 1 - y[:, 0]
    codes, posterior = model.edited_codes(x, y_target, y=y), model.encode(x, y)
    w, w_post = codes["w"].reshape(6, 3, 2), posterior["w_mean"].reshape(6, 3, 2)
    # on: 0 + 1.5 * (3 - 0); off: the absent mean; the others keep E[w | x, y] bit for bit
    np.testing.assert_array_equal(w[:, 0], np.where(y_target[:, :1] == 1, 4.5, 0.0) * np.ones((6, 2)))
    np.testing.assert_array_equal(w[:, 1:], w_post[:, 1:])
    edited = model.manipulate(x, y_target, y=y)
    np.testing.assert_allclose(model.switched_edit_tensors(x, y, y_target).numpy(), edited, atol=1e-5)
    # Changed on a built model, it applies to the next edit; 1 is the paper's rule.
    model.edit_strength = 1.0
    np.testing.assert_array_equal(model.target_w([[1, 0, 1]]), [[3, 3, 0, 0, 3, 3]])
    assert not np.allclose(model.manipulate(x, y_target, y=y), edited)
    for bad in (0, -1.0, float("nan"), float("inf"), "strong", True, None, [1.5, 0, 1]):
        with pytest.raises(ValueError, match="edit_strength must be a finite number > 0"):
            model.edit_strength = bad
    with pytest.raises(ValueError, match="edit_strength has 2 values; expected 3, one per label"):
        model.edit_strength = [1.5, 2.0]
    with pytest.raises(ValueError, match="edit_strength has 0 values"):
        model.edit_strength = []
    assert model.edit_strength == 1.0
    # One strength per label: each switched label moves by its own.
    model.edit_strength = [1.5, 1.0, 2.0]
    assert model.edit_strength == (1.5, 1.0, 2.0)
    np.testing.assert_array_equal(model.target_w([[1, 1, 1], [0, 1, 0]]), [[4.5, 4.5, 3, 3, 6, 6], [0, 0, 3, 3, 0, 0]])
    y_target = 1 - y
    np.testing.assert_allclose(
        model.switched_edit_tensors(x, y, y_target).numpy(), model.manipulate(x, y_target, y=y), atol=1e-5
    )


def test_switched_traversal_moves_only_the_traversed_subspace():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=2)
    x, y = random_data(3, (16, 16, 3), 2)
    grid = model.subspace_grid(0, n=2)
    frames = model.traverse(x, 0, grid, y=y)
    posterior = model.encode(x, y)
    for point, frame in zip(grid, frames):
        w = posterior["w_mean"].copy()
        w[:, :2] = point
        np.testing.assert_allclose(frame, model.decode(posterior["z_mean"], w), atol=1e-6)
    np.testing.assert_allclose(model.edit_variants(x, 0, n=4, y=y), frames, atol=1e-6)


def test_explicit_points_and_traversal():
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=2, output_activation="linear")
    x, _ = random_data(3, (16, 16, 3), 2)
    grid = model.subspace_grid("label_1", n=3)
    assert grid.shape == (9, 2)
    np.testing.assert_allclose(grid.mean(axis=0), [3.0, 3.0], atol=1e-6)
    frames = model.traverse(x, "label_1", grid)
    assert frames.shape == (9, 3, 16, 16, 3)
    # A point is put exactly where asked: the decoded w equals the prior mean elsewhere.
    w = model.target_w([[0, 1]], w_points={"label_1": [5.0, -1.0]})
    np.testing.assert_array_equal(w, [[0.0, 0.0, 5.0, -1.0]])
    assert not np.allclose(frames[0], frames[-1])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.encode(np.zeros((2, 4)), np.zeros((2, 2))), "expects \\[batch, 3\\]"),
        (lambda m: m.encode(np.zeros((2, 3)), np.zeros((2, 3))), "3 label\\(s\\) per example; this model has 2"),
        (lambda m: m.encode(np.zeros((2, 3)), np.full((2, 2), 0.5)), "0 or 1"),
        (lambda m: m.encode(np.full((2, 3), np.nan), np.zeros((2, 2))), "NaN"),
        (lambda m: m.manipulate(np.zeros((2, 3)), np.zeros((3, 2))), "2 examples in x but 3"),
        (lambda m: m.reconstruct(np.zeros((2, 3))), "CSVAE.reconstruct needs the source labels y"),
        (lambda m: m.encode(np.zeros((2, 3))), "CSVAE.encode needs the source labels y"),
        (lambda m: m.decode(np.zeros((2, 5)), np.zeros((2, 4))), "z has shape"),
        (lambda m: m.target_w([[1, 0]], w_points={"nope": [0, 0]}), "Unknown label"),
        (lambda m: m.fit(np.zeros((4, 5)), np.zeros((4, 2)), verbose=0), "expects \\[batch, 3\\]"),
        (lambda m: m.fit(np.zeros((4, 3)), np.zeros((4, 1)), verbose=0), "expects \\[batch, 2\\]"),
    ],
)
def test_bad_inputs_give_clear_errors(mlp_model, call, message):
    with pytest.raises(InputError, match=message):
        call(mlp_model)


def test_config_round_trip():
    model = tiny_csvae(
        data_shape=(16, 16, 3),
        num_labels=2,
        prior="A",
        betas=[1, 2, 3, 4, 5],
        label_names=["a", "b"],
        log_var_init=-4,
        edit_strength=[1.25, 1.5],
        edit_locality=0.5,
        edit_locality_saturation=0.05,
    )
    clone = CSVAE.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.prior.mean_present == 0.0 and clone.betas.kl_z == 3.0 and clone.log_var_init == -4.0
    assert clone.edit_strength == (1.25, 1.5) and clone.edit_locality == 0.5 and clone.edit_locality_saturation == 0.05
    with pytest.raises(ValueError, match="edit_locality must"):
        tiny_csvae(edit_locality=-1)
    with pytest.raises(ValueError, match="edit_locality_saturation must"):
        tiny_csvae(edit_locality_saturation=-1)


def test_flipped_w_moves_one_label_per_example_to_the_other_values_prior():
    model = tiny_csvae(data_shape=(3,), num_labels=3, w_dim=2)
    n = 3000
    w = np.full((n, 6), 7.0, np.float32)  # a value no prior draw comes near
    y = (np.random.default_rng(0).random((n, 3)) > 0.5).astype(np.float32)
    w_flipped = model.flipped_w(tf.constant(w), tf.constant(y), tf.constant([1, 2])).numpy()
    moved = (w_flipped != 7.0).reshape(n, 3, 2)
    assert (moved.all(-1) | ~moved.any(-1)).all()  # a subspace moves whole or not at all
    assert (moved.all(-1).sum(-1) == 1).all()  # exactly one label per example
    label = moved.all(-1).argmax(-1)
    np.testing.assert_allclose(np.bincount(label) / n, 1 / 3, atol=0.03)
    drawn = w_flipped.reshape(n, 3, 2)[np.arange(n), label]  # [n, 2]
    was_on = y[np.arange(n), label] == 1
    prior = model.prior  # switched off: N(0, 0.1²); switched on: N(3, 1)
    np.testing.assert_allclose(drawn[was_on].mean(0), prior.mean_absent, atol=0.02)
    np.testing.assert_allclose(drawn[was_on].std(0), prior.scale_absent, rtol=0.1)
    np.testing.assert_allclose(drawn[~was_on].mean(0), prior.mean_present, atol=0.1)
    np.testing.assert_allclose(drawn[~was_on].std(0), prior.scale_present, rtol=0.1)
    again = model.flipped_w(tf.constant(w), tf.constant(y), tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(again, w_flipped)  # seeded


def test_edit_locality_adds_lambda_times_the_edit_change_to_the_loss():
    x, y = random_data(32, (3,), 2)
    plain, local = tiny_csvae(num_labels=2), tiny_csvae(num_labels=2, edit_locality=0.5)
    local.set_weights(plain.get_weights())
    seed = tf.constant([3, 4])
    x, y = tf.constant(x), tf.constant(y)
    terms, _, _ = plain.loss_terms(x, y, seed, training=False)
    local_terms, _, _ = local.loss_terms(x, y, seed, training=False)
    assert "edit_change" not in terms and (local_terms["edit_change"].numpy() > 0).all()
    assert local_terms["edit_change"].shape == (8,)  # a quarter of the batch
    np.testing.assert_allclose(
        local_terms["loss"].numpy(), terms["loss"].numpy() + 0.5 * local_terms["edit_change"].numpy().mean(), rtol=1e-5
    )
    history = compiled(local).fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["edit_change"]).all()


def test_log_var_init_sets_the_initial_posterior_variance():
    x, y = np.zeros((2, 16, 16, 3), np.float32), np.zeros((2, 2), np.float32)
    for init in (0.0, -4.0):
        codes = tiny_csvae(data_shape=(16, 16, 3), num_labels=2, log_var_init=init).encode(x, y)
        # A zero image makes every ReLU feature 0 (zero biases at init): the heads output their bias.
        np.testing.assert_allclose(codes["z_log_var"], init, atol=1e-6)
        np.testing.assert_allclose(codes["w_log_var"], init, atol=1e-6)


def test_keras_file_round_trip_in_fresh_process_and_resume_fit(tmp_path):
    model = compiled(tiny_csvae(data_shape=(16, 16, 3), num_labels=2, edit_strength=1.5))
    x, y = random_data(32, (16, 16, 3), 2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    expected = model.manipulate(x, [1, 0])
    code = f"""
import numpy as np, keras, keras_csvae.models
m = keras.saving.load_model({str(path)!r})
x = np.load({str(tmp_path / "x.npy")!r}); y = np.load({str(tmp_path / "y.npy")!r})
np.save({str(tmp_path / "edited.npy")!r}, m.manipulate(x, [1, 0]))
print(int(m.optimizer.iterations.numpy()), int(m.adversary_optimizer.iterations.numpy()))
m.fit(x, y, batch_size=16, epochs=1, verbose=0)
print(int(m.optimizer.iterations.numpy()), int(m.adversary_optimizer.iterations.numpy()))
"""
    out = run_python(code).split()
    np.testing.assert_allclose(np.load(tmp_path / "edited.npy"), expected, atol=1e-6)
    # Both optimisers came back with their state (2 steps) and kept counting.
    assert out == ["2", "2", "4", "4"]


def test_loaded_model_restores_adversary_optimizer_slots(tmp_path):
    model = compiled(tiny_csvae(data_shape=(3,), num_labels=1))
    x, y = random_data(32, (3,), 1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for a, b in zip(model.adversary_optimizer.variables, loaded.adversary_optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    assert any(np.any(np.array(v) != 0) for v in loaded.adversary_optimizer.variables[1:])


def test_jit_compile_trains():
    model = compiled(tiny_csvae(data_shape=(3,), num_labels=1), jit_compile=True)
    x, y = random_data(32, (3,), 1)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
