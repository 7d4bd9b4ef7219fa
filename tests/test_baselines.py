"""The paper's baselines (VAE, CondVAE, CondVAE-info): training, saving,
editing rules and input checks, through shared helpers parametrised over the
three models."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_changed, assert_unchanged, run_python, weights_of

from keras_csvae.data import load_arrays, registry
from keras_csvae.models import MODELS, VAE, CondVAE, CondVAEInfo, InputError
from keras_csvae.models.numpy_api import NumpyAPI
from keras_csvae.training.config import TrainConfig
from keras_csvae.training.train import build_model, compile_model

BASELINES = ("vae", "condvae", "condvae_info")
COMMON_METRICS = {"loss", "reconstruction_log_likelihood", "reconstruction_mse", "kl_z"}
EXPECTED_METRICS = {
    "vae": COMMON_METRICS,
    "condvae": COMMON_METRICS,
    "condvae_info": COMMON_METRICS | {"adversary_loss"},
}
# CSVAE-style kwargs: the same ones must build every model.
SMALL_MLP = dict(z_dim=2, w_dim=1, hidden_units=(16, 16), adversary_units=(8,), betas=[20, 1, 0.2, 10, 1], prior="B")
SMALL_CONV = dict(
    z_dim=2,
    w_dim=1,
    architecture="conv",
    conv_filters=(4, 8),
    dense_units=16,
    decoder_filters=(8, 4),
    adversary_units=(8,),
)


# -- shared helpers -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def swiss_roll():
    return load_arrays("swiss_roll", "train", num_examples=256)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 2, size=(64, 2)).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def trained(images):
    """``trained(name) -> (model, history)``: one model per name fitted one epoch on ``images``, shared."""
    cache = {}

    def get(name):
        if name not in cache:
            model = build(name, images)
            cache[name] = model, fit(model, images)
        return cache[name]

    return get


def build(name, data, optimizer=None, adversary_optimizer=None, **kwargs):
    x, y = data
    kwargs = {**(SMALL_CONV if x.ndim == 4 else SMALL_MLP), **kwargs}
    model = MODELS[name](data_shape=x.shape[1:], num_labels=y.shape[1], seed=3, **kwargs)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        adversary_optimizer=adversary_optimizer or keras.optimizers.Adam(1e-3),
    )
    return model


def fit(model, data, epochs=1, batch_size=64, **kwargs):
    x, y = data
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False, **kwargs).history


def edit(model, x, y):
    """Each model's paper edit: switch every label."""
    return model.manipulate(x, y_target=1.0 - y, y=y)


# -- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("data_name", ["swiss_roll", "images"])
def test_fit_one_epoch_gives_finite_losses(name, data_name, request, trained):
    data = request.getfixturevalue(data_name)
    if data_name == "images":
        model, history = trained(name)
    else:
        model = build(name, data)
        history = fit(model, data)
    assert set(history) == EXPECTED_METRICS[name]
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert model.latent_dim == 2 + data[1].shape[1] * 1  # z_dim + k * w_dim


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_step(name, policy, swiss_roll):
    keras.mixed_precision.set_global_policy(policy)
    data = (swiss_roll[0][:64], swiss_roll[1][:64])
    model = build(name, data)
    history = fit(model, data)
    assert all(np.isfinite(values[-1]) for values in history.values())
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for fn_name, (fn, specs) in model.serving_functions().items():
        outputs = fn(*[tf.zeros([2, *spec.shape[1:]]) for spec in specs])
        assert all(t.dtype == tf.float32 for t in outputs.values()), fn_name


@pytest.mark.parametrize("name", [*BASELINES, "csvae"])
def test_training_pipeline_builds_every_model_from_the_same_kwargs(name):
    config = TrainConfig(model=name, model_kwargs=dict(SMALL_MLP))
    model = compile_model(build_model(config, registry.info("swiss_roll")), config)
    assert model.compiled


def test_condvae_info_each_optimiser_updates_only_its_side(swiss_roll):
    """With one optimiser's step size 0, only the other one's weights may move."""
    data = (swiss_roll[0][:64], swiss_roll[1][:64])
    for elbo_rate, adversary_rate in ((0.1, 0.0), (0.0, 0.1)):
        model = build(
            "condvae_info",
            data,
            optimizer=keras.optimizers.SGD(elbo_rate),
            adversary_optimizer=keras.optimizers.SGD(adversary_rate),
        )
        elbo, adversary = weights_of(model.elbo_variables), weights_of(model.adversary_variables)
        fit(model, data)
        if elbo_rate:  # the ELBO step must not move the adversary
            assert_changed(elbo, model.elbo_variables)
            assert_unchanged(adversary, model.adversary_variables)
        else:  # the adversary step must not move the encoder or decoder
            assert_changed(adversary, model.adversary_variables)
            assert_unchanged(elbo, model.elbo_variables)
    assert {id(v) for v in model.elbo_variables}.isdisjoint(id(v) for v in model.adversary_variables)


def test_condvae_info_objective_is_elbo_minus_weighted_cross_entropy(swiss_roll):
    x, y = swiss_roll[0][:32], swiss_roll[1][:32]
    model = build("condvae_info", (x, y))
    seed = model.fixed_seed(1)
    terms, codes, _ = model.loss_terms(tf.constant(x), tf.constant(y), seed, training=False)
    p = tf.sigmoid(model.adversary(codes["z"])).numpy()
    cross_entropy = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1)
    betas = model.betas
    expected = -betas.reconstruction * terms["reconstruction_log_likelihood"] + betas.kl_z * terms["kl_z"]
    np.testing.assert_allclose(terms["loss"], expected - betas.adversary_entropy * cross_entropy, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        model.adversary_loss(codes, tf.constant(y), False), betas.adversary * cross_entropy, rtol=1e-4
    )


# -- serialisation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_config_round_trip(name, swiss_roll):
    model = build(name, swiss_roll, label_names=["roll"])
    config = model.get_config()
    clone = type(model).from_config(config)
    assert type(clone) is type(model)
    assert clone.get_config() == config
    assert config["betas"] == SMALL_MLP["betas"] and config["adversary_units"] == [8] and "prior" in config


@pytest.mark.parametrize("name", BASELINES)
def test_save_load_gives_identical_edits_and_continues_fit(name, images, tmp_path):
    x, y = images
    model = build(name, images)
    fit(model, images, batch_size=32)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(edit(loaded, x[:8], y[:8]), edit(model, x[:8], y[:8]), atol=1e-6)
    np.testing.assert_allclose(loaded.reconstruct(x[:8], y[:8]), model.reconstruct(x[:8], y[:8]), atol=1e-6)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    history = fit(loaded, images, batch_size=32)
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert int(loaded.optimizer.iterations) == 4


# -- editing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BASELINES)
def test_serving_functions_match_numpy_api(name, images, trained):
    x, y = images[0][:4], images[1][:4]
    model, _ = trained(name)
    functions = model.serving_functions()
    assert {"encode", "decode", "reconstruct", "manipulate"} <= set(functions)
    values = {"x": x, "y": y, "y_target": 1.0 - y}
    for fn, specs in functions.values():
        assert all(spec.dtype == tf.float32 and spec.shape[0] is None and spec.name for spec in specs)
        if "z" in [s.name for s in specs] or "eps_z" in [s.name for s in specs]:
            continue
        outputs = fn(*[tf.constant(values[spec.name]) for spec in specs])
        assert not set(outputs) & {spec.name for spec in specs}
        assert all(t.dtype == tf.float32 for t in outputs.values())
    manipulate, specs = functions["manipulate"]
    x_edited = manipulate(*[tf.constant(values[spec.name]) for spec in specs])["x_edited"]
    np.testing.assert_allclose(x_edited, edit(model, x, y), atol=1e-6)
    encode, specs = functions["encode"]
    assert set(encode(*[tf.constant(values[spec.name]) for spec in specs])) == {"z_mean", "z_log_var"}


@pytest.mark.parametrize("name", BASELINES)
def test_edit_variants_shape(name, images, trained):
    x, y = images[0][:3], images[1][:3]
    model, _ = trained(name)
    variants = model.edit_variants(x, "label_1", n=4, y=y)
    assert variants.shape == (4, 3, 16, 16, 1)
    assert np.all(np.isfinite(variants))


@pytest.mark.parametrize("name", ["condvae", "condvae_info"])
def test_conditional_edit_with_source_labels_is_reconstruction(name, images):
    x, y = images[0][:5], images[1][:5]
    model = build(name, images)
    np.testing.assert_allclose(model.manipulate(x, y_target=y, y=y), model.reconstruct(x, y), atol=1e-6)
    variants = model.edit_variants(x, 0, n=3, y=y, seed=1)
    y_on = y.copy()
    y_on[:, 0] = 1
    np.testing.assert_allclose(variants[0], model.manipulate(x, y_target=y_on, y=y), atol=1e-6)
    assert not np.allclose(variants[1], variants[0])  # the others sample q(z | .)


def test_vae_running_class_statistics_closed_form(swiss_roll):
    """With a frozen encoder, ``fit`` accumulates decayed per-class sums of the posterior means."""
    x, y = swiss_roll[0][:128], swiss_roll[1][:128]
    model = build("vae", (x, y), optimizer=keras.optimizers.SGD(0.0), class_mean_decay=0.9)
    fit(model, (x, y), batch_size=64)
    z = model.encode(x)["z_mean"].astype(np.float64)
    on = y[:, 0] == 1

    def stats(rows):
        return (
            np.stack([z[rows & ~on].sum(0), z[rows & on].sum(0)])[:, None],
            np.array([[np.sum(rows & ~on)], [np.sum(rows & on)]], np.float64),
        )

    first, second = np.arange(128) < 64, np.arange(128) >= 64
    (s1, c1), (s2, c2) = stats(first), stats(second)
    np.testing.assert_allclose(model.class_sums.numpy(), 0.9 * s1 + s2, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.class_counts.numpy(), 0.9 * c1 + c2, rtol=1e-6)


def test_vae_attribute_vectors_and_edit_rule(swiss_roll):
    x, y = swiss_roll
    model = build("vae", swiss_roll)
    fit(model, swiss_roll)
    vectors = model.fit_attribute_vectors(x, y)
    z = model.encode(x)["z_mean"].astype(np.float64)
    on = y[:, 0] == 1
    m1, m0 = z[on].mean(0), z[~on].mean(0)
    np.testing.assert_allclose(vectors[0], m1 - m0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.class_means[:, 0], np.stack([m0, m1]), rtol=1e-4, atol=1e-5)

    d_hat = (m1 - m0) / np.linalg.norm(m1 - m0)
    for target, mean in ((1.0, m1), (0.0, m0)):
        edited = model.edit_codes(z[:16], [[target]])
        np.testing.assert_allclose(edited @ d_hat, np.full(16, mean @ d_hat), rtol=1e-4, atol=1e-4)
        # Only the coordinate along d̂ moves.
        residual = (edited - z[:16]) - np.outer((edited - z[:16]) @ d_hat, d_hat)
        np.testing.assert_allclose(residual, 0, atol=1e-4)

    # manipulate decodes the edited code; the middle variant (strength 1) is that edit.
    np.testing.assert_allclose(model.manipulate(x[:8], [[1]]), model.decode(model.edit_codes(z[:8], [[1]])), atol=1e-5)
    variants = model.edit_variants(x[:8], "label_0", n=3)
    np.testing.assert_allclose(variants[1], model.manipulate(x[:8], [[1]]), atol=1e-5)
    assert not np.allclose(variants[0], variants[2])


def test_vae_switched_edit_follows_the_paper_rule(swiss_roll):
    """μθ(μφ(x) − m_i^{y_i} + m_i^{y'_i}) for the switched label only."""
    x, y = swiss_roll
    model = build("vae", swiss_roll)
    fit(model, swiss_roll)
    model.fit_attribute_vectors(x, y)
    means = model.class_means.astype(np.float64)  # [2, k, latent]
    z = model.encode(x[:16])["z_mean"].astype(np.float64)
    source = y[:16].astype(int)
    expected_codes = z - means[source[:, 0], 0] + means[1 - source[:, 0], 0]
    edited = model.manipulate(x[:16], 1.0 - y[:16], y=y[:16])
    np.testing.assert_allclose(edited, model.decode(expected_codes.astype(np.float32)), atol=1e-4)
    # Labels that are not switched are not touched: the edit is the reconstruction.
    np.testing.assert_allclose(model.manipulate(x[:16], y[:16], y=y[:16]), model.reconstruct(x[:16]), atol=1e-5)


MIRRORED_CLASS_STATISTICS = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_csvae.data import load_arrays
from keras_csvae.models import VAE
x, y = load_arrays("swiss_roll", "train", num_examples=128)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = VAE(data_shape=(3,), num_labels=1, hidden_units=(16,), z_dim=2, class_mean_decay=0.9)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=1, verbose=0)
z, on = model.encode(x)["z_mean"].astype(np.float64), y[:, 0] == 1
first = np.arange(128) < 64
def sums(rows):
    return np.stack([z[rows & ~on].sum(0), z[rows & on].sum(0)])[:, None]
expected = 0.9 * sums(first) + sums(~first)
print(float(np.abs(model.class_sums.numpy() - expected).max()))
"""


def test_vae_class_statistics_sum_over_replicas():
    """Two mirrored replicas (in a fresh process: one MirroredStrategy per test
    process) give the single-device closed form: on-read sums over replicas."""
    assert float(run_python(MIRRORED_CLASS_STATISTICS).strip().splitlines()[-1]) < 1e-4


def test_vae_without_attribute_statistics_refuses_to_edit(swiss_roll):
    model = build("vae", swiss_roll)
    with pytest.raises(InputError, match="fit_attribute_vectors"):
        model.manipulate(swiss_roll[0][:2], [[1]])
    assert np.all(np.isnan(model.attribute_vectors))


# -- one numpy API for the four models ---------------------------------------------------------------
@pytest.mark.parametrize("name", [*BASELINES, "csvae"])
def test_every_model_takes_the_same_numpy_calls(name, images, trained):
    """Callers need not know the model: the same calls, declared once, on every one."""
    x, y = images[0][:3], images[1][:3]
    model = build(name, images, w_dim=2) if name == "csvae" else trained(name)[0]
    for method in ("encode", "reconstruct", "manipulate", "edit_variants"):
        assert getattr(type(model), method) is getattr(NumpyAPI, method), method
    assert model.encode(x, y, batch_size=2)["z_mean"].shape[0] == 3
    assert model.reconstruct(x, y, batch_size=2).shape == x.shape
    for rule in (None, *model.edit_rules):
        assert model.manipulate(x, 1.0 - y, y, rule, batch_size=2).shape == x.shape, rule
    np.testing.assert_allclose(model.manipulate(x, 1.0 - y, y=y, batch_size=2), edit(model, x, y), atol=1e-6)
    assert model.edit_variants(x, 0, n=4, y=y, batch_size=2).shape == (4, *x.shape)
    with pytest.raises(InputError, match="Unknown edit rule"):
        model.manipulate(x, y, y=y, rule="nope")
    with pytest.raises(InputError, match="n ≥ 1"):
        model.edit_variants(x, 0, n=0, y=y)


# -- input checks --------------------------------------------------------------------------------------
def test_condvae_needs_source_labels(images):
    x, y = images[0][:2], images[1][:2]
    model = build("condvae", images)
    for call in (
        lambda: model.manipulate(x, y_target=y),
        lambda: model.encode(x),
        lambda: model.reconstruct(x),
        lambda: model.edit_variants(x, 0, n=2),
    ):
        with pytest.raises(InputError, match="source labels"):
            call()
    with pytest.raises(InputError, match="labels"):
        model.decode(np.zeros((2, model.latent_dim)))
    # CondVAE-info and the VAE encode from x alone.
    build("condvae_info", images).manipulate(x, y_target=y)


@pytest.mark.parametrize("name", BASELINES)
def test_wrong_shapes_raise_input_error(name, images, trained):
    x, y = images[0][:3], images[1][:3]
    model, _ = trained(name)
    bad_calls = {
        "x shape": lambda: model.manipulate(x[..., 0], y_target=y, y=y),
        "y_target labels": lambda: model.manipulate(x, y_target=np.ones((3, 3)), y=y),
        "y_target rows": lambda: model.manipulate(x, y_target=np.ones((2, 2)), y=y),
        "source rows": lambda: model.manipulate(x, y_target=y, y=y[:2]),
        "label values": lambda: model.manipulate(x, y_target=y * 2, y=y),
        "z dim": lambda: model.decode(np.zeros((3, model.latent_dim + 1)), y),
        "unknown label": lambda: model.edit_variants(x, "glasses", y=y),
        "fit x shape": lambda: build(name, images).fit(x[..., 0], y, verbose=0),
    }
    for what, call in bad_calls.items():
        with pytest.raises(InputError):
            call()
            pytest.fail(what)


def test_baselines_are_registered():
    assert MODELS["vae"] is VAE and MODELS["condvae"] is CondVAE and MODELS["condvae_info"] is CondVAEInfo
