"""The CSVAE objective as pure functions of tensors.

Notation of the paper (Klys et al., 2018): ``x`` data, ``y`` binary labels ``[batch, k]``, ``w`` the
label subspaces ``W_1 x ... x W_k`` laid out as ``[batch, k * w_dim]`` (label
``i`` owns columns ``i*w_dim : (i+1)*w_dim``), ``z`` the rest ``[batch, z_dim]``.

Per example (every function returns a ``[batch]`` tensor; the model averages
over the global batch):

    M1 = β1·E_q[log p(x|w,z)] − β2·KL(q(w|x,y) ‖ p(w|y)) − β3·KL(q(z|x) ‖ p(z))
    M2 = β4·Σ_i Σ_{y_i∈{0,1}} q_δ(y_i|z) log q_δ(y_i|z)
    N  = β5·Σ_i log q_δ(y_i|z)

Encoders and decoder minimise ``−M1 + M2``; the adversary maximises ``N``.
With ``edit_locality`` λ > 0 (not in the paper) they also minimise
``λ·edit_change`` of random one-label edits of a quarter of the batch
(``CSVAE.flipped_w``).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_probability as tfp

from serving.runtime.contract import edit_point, prior_parameters, strength_columns

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class WPrior:
    """The fixed prior ``p(w_i | y_i)``, a diagonal Gaussian per label value.

    ``y_i = 0 → N(mean_absent·1, scale_absent² I)``,
    ``y_i = 1 → N(mean_present·1, scale_present² I)``.

    The default is convention "B": absence is a tight point at the
    origin, presence a broad region with room for several styles.
    ``WPrior.convention("A")`` gives the reverse, used by several
    re-implementations.
    """

    mean_absent: float = 0.0
    scale_absent: float = 0.1
    mean_present: float = 3.0
    scale_present: float = 1.0

    @classmethod
    def convention(cls, name: str) -> WPrior:
        if name == "B":
            return cls()
        if name == "A":
            return cls(mean_absent=3.0, scale_absent=1.0, mean_present=0.0, scale_present=0.1)
        raise ValueError(f"Unknown prior convention {name!r}; use 'A' or 'B'.")

    def __post_init__(self):
        if not (self.scale_absent > 0 and self.scale_present > 0):
            raise ValueError(f"Prior scales must be positive, got {self}.")

    def parameters(self, y, w_dim: int):
        """Mean and scale of ``p(w|y)``, each ``[batch, k * w_dim]``.

        Args:
          y: ``[batch, k]`` labels in {0, 1} (any float dtype).
          w_dim: dimensions per label subspace.

        The formula is the runtime's (``prior_parameters``), so exported graphs
        and the TensorFlow-free editor compute the same numbers.
        """
        return prior_parameters(tf.repeat(y, w_dim, axis=-1), dataclasses.asdict(self))

    def edit_targets(self, y, w_dim: int, strength=1.0):
        """Where an edit to labels ``y`` ``[batch, k]`` puts ``w``, ``[batch, k * w_dim]``:
        ``mean_absent + y · strength · (mean_present − mean_absent)`` (the
        runtime's ``edit_point``; ``strength = 1`` is the prior's mean), with
        ``strength`` a number or one per label."""
        columns = strength_columns(strength, y.shape[-1], w_dim)
        return edit_point(tf.repeat(y, w_dim, axis=-1), dataclasses.asdict(self), columns)

    def distribution(self, y, w_dim: int):
        """``p(w|y)`` as ``Independent(Normal)`` with event shape ``[k * w_dim]``."""
        mean, scale = self.parameters(y, w_dim)
        return diagonal_gaussian(mean, scale=scale)


def diagonal_gaussian(mean, log_var=None, scale=None):
    """``N(mean, diag(exp(log_var)))`` with event shape ``mean.shape[-1:]``."""
    if scale is None:
        scale = tf.exp(0.5 * log_var)
    return tfd.Independent(tfd.Normal(loc=mean, scale=scale), reinterpreted_batch_ndims=1)


def reconstruction_log_likelihood(x, x_mean, scale: float = 1.0):
    """``log p(x | w, z)`` for a Gaussian decoder ``N(x_mean, scale² I)``.

    Args:
      x, x_mean: ``[batch, *event]``.
      scale: the decoder's fixed standard deviation.

    Returns:
      ``[batch]``: ``Σ_d log N(x_d; x_mean_d, scale²)`` summed over all event dims.
    """
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    x_mean = tf.reshape(tf.cast(x_mean, x.dtype), [tf.shape(x_mean)[0], -1])
    return tfd.Independent(tfd.Normal(loc=x_mean, scale=tf.cast(scale, x.dtype)), reinterpreted_batch_ndims=1).log_prob(
        x
    )


def kl_z(z_mean, z_log_var):
    """``KL(q(z|x) ‖ N(0, I))``, ``[batch]``.

    Closed form: ``½ Σ_j (σ_j² + μ_j² − 1 − log σ_j²)``.
    """
    posterior = diagonal_gaussian(z_mean, z_log_var)
    prior = diagonal_gaussian(tf.zeros_like(z_mean), scale=tf.ones_like(z_mean))
    return tfd.kl_divergence(posterior, prior)


def kl_w(w_mean, w_log_var, y, prior: WPrior, w_dim: int):
    """``KL(q(w|x,y) ‖ p(w|y))``, ``[batch]``.

    Closed form per dimension, with prior ``N(m, s²)``:
    ``log(s/σ) + (σ² + (μ − m)²) / (2 s²) − ½``.
    """
    posterior = diagonal_gaussian(w_mean, w_log_var)
    return tfd.kl_divergence(posterior, prior.distribution(tf.cast(y, w_mean.dtype), w_dim))


def adversary_negative_entropy(adversary_logits):
    """``Σ_i Σ_{y_i∈{0,1}} q_δ(y_i|z) log q_δ(y_i|z)``, ``[batch]``, always ``≤ 0``.

    Args:
      adversary_logits: ``[batch, k]`` Bernoulli logits of ``q_δ(y|z)``.
    """
    return -tf.reduce_sum(tfd.Bernoulli(logits=adversary_logits).entropy(), axis=-1)


def adversary_log_likelihood(y, adversary_logits):
    """``Σ_i log q_δ(y_i | z)``, ``[batch]``."""
    y = tf.cast(y, adversary_logits.dtype)
    return tf.reduce_sum(tfd.Bernoulli(logits=adversary_logits).log_prob(y), axis=-1)


@dataclasses.dataclass(frozen=True)
class Betas:
    """The weights ``β1..β5`` of the objective (defaults: most public code)."""

    reconstruction: float = 20.0  # β1
    kl_w: float = 1.0  # β2
    kl_z: float = 0.2  # β3
    adversary_entropy: float = 10.0  # β4
    adversary: float = 1.0  # β5

    @classmethod
    def from_list(cls, values) -> Betas:
        values = list(values)
        if len(values) != 5:
            raise ValueError(f"betas needs 5 numbers (β1..β5), got {values}.")
        return cls(*map(float, values))

    def as_list(self) -> list[float]:
        return list(dataclasses.astuple(self))


def elbo_objective(terms: dict, betas: Betas):
    """``−M1 + M2`` per example, ``[batch]``, from the terms computed above.

    ``terms`` holds ``reconstruction_log_likelihood``, ``kl_w``, ``kl_z`` and
    ``adversary_negative_entropy``, each ``[batch]``.
    """
    m1 = (
        betas.reconstruction * terms["reconstruction_log_likelihood"]
        - betas.kl_w * terms["kl_w"]
        - betas.kl_z * terms["kl_z"]
    )
    m2 = betas.adversary_entropy * terms["adversary_negative_entropy"]
    return -m1 + m2


# -- pieces shared with the baselines (VAE, CondVAE, CondVAE-info) -------------------------------


def as_betas(value) -> Betas:
    """``Betas`` from ``None`` (defaults), a ``Betas`` or a list ``[β1, …, β5]``."""
    if isinstance(value, Betas):
        return value
    return Betas.from_list(value) if value is not None else Betas()


def as_w_prior(value) -> WPrior:
    """``WPrior`` from ``None`` (convention "B"), a ``WPrior``, ``"A"``/``"B"`` or a dict of its fields."""
    if isinstance(value, WPrior):
        return value
    if isinstance(value, str):
        return WPrior.convention(value)
    return WPrior(**(value or {}))


def reconstruction_mse(x, x_mean):
    """Mean squared error over all event dims, ``[batch]``."""
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    x_mean = tf.reshape(tf.cast(x_mean, x.dtype), [tf.shape(x_mean)[0], -1])
    return tf.reduce_mean(tf.square(x - x_mean), axis=-1)


def edit_change(x_edited, x_mean, saturation: float = 0.0):
    """How much an edit moves the decoded image, ``[batch]``: ``Σ ρ(x_edited −
    x_mean)`` over all event dims, with ``ρ(d) = |d|`` (the L1 norm) or, for
    ``saturation`` ``c > 0``, ``ρ(d) = c·log(1 + |d|/c)``.

    As a penalty (``LatentModel``'s ``edit_locality``) the L1 norm costs a
    small change spread over the whole image far more than the same squared
    change in a few pixels, so it lets the decoder draw an attribute but not
    shift the rest of the face. ``ρ`` with saturation ``c`` is the L1 norm for
    ``|d| ≪ c`` but grows only logarithmically beyond: its gradient
    ``c / (c + |d|)`` leaves strong changes (the attribute's own pixels) almost
    free while small ones (the rest of the face) cost as under L1."""
    diff = tf.reshape(tf.cast(x_edited, tf.float32) - tf.cast(x_mean, tf.float32), [tf.shape(x_mean)[0], -1])
    if saturation > 0:
        return tf.reduce_sum(saturation * tf.math.log1p(tf.abs(diff) / saturation), axis=-1)
    return tf.reduce_sum(tf.abs(diff), axis=-1)


def label_cross_entropy(y, logits):
    """``−Σ_i log q(y_i | ·)``: binary cross-entropy summed over the ``k`` labels, ``[batch]``."""
    return -adversary_log_likelihood(y, logits)


def vae_objective(terms: dict, betas: Betas):
    """The baselines' negative weighted ELBO per example, ``[batch]``:

        −(β1·log p(x | ·) − β3·KL(q(z | ·) ‖ N(0, I)))

    with the CSVAE's β1 (reconstruction) and β3 (the KL of ``z`` to ``N(0, I)``);
    ``terms`` holds ``reconstruction_log_likelihood`` and ``kl_z``.
    """
    return -(betas.reconstruction * terms["reconstruction_log_likelihood"] - betas.kl_z * terms["kl_z"])
