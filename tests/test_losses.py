"""The objective's terms against their closed forms and seeded Monte Carlo."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from keras_csvae import losses
from serving.runtime.contract import ContractError

RNG = np.random.default_rng(0)


def _gaussian_kl(mu, var, m, s2):
    """Closed form KL(N(mu, var) ‖ N(m, s2)) per dim, summed over the last axis."""
    return np.sum(0.5 * (np.log(s2 / var) + (var + (mu - m) ** 2) / s2 - 1.0), axis=-1)


def test_kl_z_matches_closed_form():
    mu = RNG.normal(size=(5, 4)).astype(np.float32)
    log_var = RNG.normal(size=(5, 4)).astype(np.float32)
    expected = 0.5 * np.sum(np.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)
    np.testing.assert_allclose(losses.kl_z(mu, log_var).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("convention", ["A", "B"])
def test_kl_w_matches_closed_form_per_label_value(convention):
    prior = losses.WPrior.convention(convention)
    w_dim, k = 2, 3
    mu = RNG.normal(size=(6, k * w_dim)).astype(np.float32)
    log_var = RNG.normal(scale=0.3, size=(6, k * w_dim)).astype(np.float32)
    y = RNG.integers(0, 2, size=(6, k)).astype(np.float32)
    y_rep = np.repeat(y, w_dim, axis=-1)
    m = np.where(y_rep == 1, prior.mean_present, prior.mean_absent)
    s = np.where(y_rep == 1, prior.scale_present, prior.scale_absent)
    expected = _gaussian_kl(mu, np.exp(log_var), m, s**2)
    np.testing.assert_allclose(losses.kl_w(mu, log_var, y, prior, w_dim).numpy(), expected, rtol=1e-4)


def test_kl_w_matches_seeded_monte_carlo():
    prior = losses.WPrior()
    mu = np.array([[0.5, -0.2, 2.5, 3.3]], np.float32)
    log_var = np.array([[-1.0, -2.0, 0.1, -0.3]], np.float32)
    y = np.array([[0.0, 1.0]], np.float32)
    q = losses.diagonal_gaussian(mu, log_var)
    p = prior.distribution(y, w_dim=2)
    samples = q.sample(200_000, seed=tf.constant([1, 2], tf.int32))
    monte_carlo = tf.reduce_mean(q.log_prob(samples) - p.log_prob(samples), axis=0).numpy()
    closed = losses.kl_w(mu, log_var, y, prior, 2).numpy()
    np.testing.assert_allclose(monte_carlo, closed, rtol=0.02)


def test_prior_layout_gives_each_label_its_own_columns():
    prior = losses.WPrior()
    mean, scale = prior.parameters(tf.constant([[1.0, 0.0]]), w_dim=2)
    np.testing.assert_array_equal(mean.numpy(), [[3.0, 3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(scale.numpy(), np.array([[1.0, 1.0, 0.1, 0.1]], np.float32))


@pytest.mark.parametrize("convention", ["A", "B"])
def test_edit_targets_put_labels_switched_on_strength_times_as_far(convention):
    from serving.runtime.contract import edit_w

    prior = losses.WPrior.convention(convention)
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    mean, _ = prior.parameters(y, w_dim=2)
    # strength 1 is the prior's mean (the paper's rule), bit for bit
    np.testing.assert_array_equal(prior.edit_targets(y, 2).numpy(), mean.numpy())
    # on: mean_absent + s (mean_present - mean_absent); off: mean_absent, whatever s
    on = prior.mean_absent + 1.5 * (prior.mean_present - prior.mean_absent)
    expected = np.array([[on, on, prior.mean_absent, prior.mean_absent], [prior.mean_absent] * 2 + [on, on]])
    np.testing.assert_allclose(prior.edit_targets(y, 2, strength=1.5).numpy(), expected, rtol=1e-6)
    # the TensorFlow-free runtime computes the same numbers
    np.testing.assert_array_equal(edit_w(y.numpy(), dataclasses.asdict(prior), 2, 1.5), prior.edit_targets(y, 2, 1.5))
    # one strength per label: label i's columns use strength i
    on_2 = prior.mean_absent + 2.0 * (prior.mean_present - prior.mean_absent)
    per_label = np.array([[on, on, prior.mean_absent, prior.mean_absent], [prior.mean_absent] * 2 + [on_2, on_2]])
    np.testing.assert_allclose(prior.edit_targets(y, 2, strength=(1.5, 2.0)).numpy(), per_label, rtol=1e-6)
    np.testing.assert_array_equal(
        edit_w(y.numpy(), dataclasses.asdict(prior), 2, [1.5, 2.0]), prior.edit_targets(y, 2, [1.5, 2.0])
    )
    with pytest.raises(ContractError, match="edit_strength has 3 values; expected 2, one per label"):
        prior.edit_targets(y, 2, strength=(1.5, 2.0, 1.0))


def test_reconstruction_log_likelihood_is_a_summed_gaussian():
    x = RNG.random((3, 4, 4, 1)).astype(np.float32)
    x_mean = RNG.random((3, 4, 4, 1)).astype(np.float32)
    scale = 0.5
    expected = np.sum(-0.5 * ((x - x_mean) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=(1, 2, 3))
    np.testing.assert_allclose(losses.reconstruction_log_likelihood(x, x_mean, scale).numpy(), expected, rtol=1e-5)


def test_adversary_negative_entropy_closed_form_and_bounds():
    logits = np.array([[0.0, 0.0], [10.0, -10.0], [1.0, -2.0]], np.float32)
    p = 1 / (1 + np.exp(-logits))
    expected = np.sum(p * np.log(p) + (1 - p) * np.log(1 - p), axis=-1)
    got = losses.adversary_negative_entropy(logits).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # Maximal uncertainty gives −k·log 2; certainty gives ~0.
    np.testing.assert_allclose(got[0], -2 * np.log(2), rtol=1e-6)
    assert -1e-3 < got[1] <= 0


def test_adversary_log_likelihood_is_bernoulli_log_prob():
    logits = np.array([[2.0, -1.0]], np.float32)
    y = np.array([[1.0, 1.0]], np.float32)
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(losses.adversary_log_likelihood(y, logits).numpy(), np.log(p).sum(-1), rtol=1e-5)


def test_elbo_objective_weights_each_term():
    terms = {
        "reconstruction_log_likelihood": tf.constant([-2.0]),
        "kl_w": tf.constant([3.0]),
        "kl_z": tf.constant([5.0]),
        "adversary_negative_entropy": tf.constant([-0.5]),
    }
    betas = losses.Betas(20, 1, 0.2, 10, 1)
    # −M1 + M2 = −(20·(−2) − 1·3 − 0.2·5) + 10·(−0.5)
    assert losses.elbo_objective(terms, betas).numpy()[0] == pytest.approx(44.0 - 5.0)


def test_edit_change_is_the_l1_norm_per_example():
    x_mean = tf.zeros([2, 2, 2, 3])
    x_edited = tf.constant(np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3) / 24 - 0.5)
    expected = np.abs(x_edited.numpy()).reshape(2, -1).sum(-1)
    np.testing.assert_allclose(losses.edit_change(x_edited, x_mean).numpy(), expected, rtol=1e-6)
    # The same squared change spread over 100 values costs 10× the L1 of one value's.
    one = tf.constant([[1.0] + [0.0] * 99])
    spread = tf.fill([1, 100], 0.1)
    np.testing.assert_allclose(
        losses.reconstruction_mse(one, tf.zeros([1, 100])), losses.reconstruction_mse(spread, tf.zeros([1, 100]))
    )
    assert losses.edit_change(spread, tf.zeros([1, 100])).numpy()[0] == pytest.approx(
        10 * losses.edit_change(one, tf.zeros([1, 100])).numpy()[0]
    )


def test_saturated_edit_change_is_l1_for_small_changes_and_logarithmic_for_large():
    d = np.array([[0.001, -0.5, 2.0]], np.float32)
    c = 0.05
    got = losses.edit_change(tf.constant(d), tf.zeros([1, 3]), saturation=c).numpy()[0]
    assert got == pytest.approx(np.sum(c * np.log1p(np.abs(d) / c)), rel=1e-5)
    small = losses.edit_change(tf.constant([[1e-4]]), tf.zeros([1, 1]), saturation=c).numpy()[0]
    assert small == pytest.approx(1e-4, rel=1e-2)  # ≈ |d| for |d| ≪ c
    # A change 10× as large costs far less than 10× as much beyond c.
    big = [losses.edit_change(tf.constant([[v]]), tf.zeros([1, 1]), saturation=c).numpy()[0] for v in (0.5, 5.0)]
    assert big[1] < 2 * big[0]


def test_bad_prior_and_betas_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        losses.WPrior(scale_absent=0.0)
    with pytest.raises(ValueError, match="5 numbers"):
        losses.Betas.from_list([1, 2])
    with pytest.raises(ValueError, match="convention"):
        losses.WPrior.convention("C")
