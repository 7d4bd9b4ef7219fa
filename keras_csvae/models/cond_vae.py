"""The conditional baselines of the CSVAE paper: CondVAE and CondVAE-info."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_csvae import losses
from keras_csvae.models.base import OneOptimizerModel, TwoOptimizerModel
from keras_csvae.models.baseline import METRIC_NAMES, BaselineMixin


class ConditionalDecoderMixin(BaselineMixin):
    """What ``CondVAE`` and ``CondVAEInfo`` share: the decoder ``p(x | z, y)``
    sees ``concat(z, y)``, and an edit decodes the code of ``x`` with the
    target labels instead of the source ones.

    Their one edit rule, ``"relabel"``, needs the source labels exactly when
    the encoder sees them. Neither model has style control beyond ``z``:
    ``edit_variants`` decodes the same target labels with the posterior mean
    and with ``n − 1`` samples of ``q(z | ·)``.
    """

    decoder_uses_labels = True

    @property
    def edit_rules(self):
        return {"relabel": self.encoder_uses_labels}

    def build_decoder(self):
        return self.decoder_network(self.latent_dim + self.num_labels)

    def decode_tensors(self, z, y):
        return self.decoder(tf.concat([tf.cast(z, tf.float32), tf.cast(y, tf.float32)], axis=-1))

    def _edited(self, x, y, y_target):
        return self.decode_tensors(self.encode_tensors(x, y)["z_mean"], y_target)

    def _edited_without_source_labels(self, x, y_target):
        return self._edited(x, None, y_target)

    def serving_manipulate(self):
        """``manipulate(x, [y,] y_target) -> x_edited``: decode ``x``'s code with ``y_target``
        (``y``, the source labels, only when the encoder needs them)."""
        if self.encoder_uses_labels:
            return (lambda x, y, y_target: {"x_edited": self._edited(x, y, y_target)}), [
                self.x_spec(),
                self.y_spec(),
                self.y_spec("y_target"),
            ]
        return (lambda x, y_target: {"x_edited": self._edited_without_source_labels(x, y_target)}), [
            self.x_spec(),
            self.y_spec("y_target"),
        ]

    def _manipulate(self, x, y_target, y, rule, batch_size):
        """Decodes the posterior mean of ``z`` with ``y_target`` (``y`` seen by the encoder, if it sees labels)."""
        if not self.encoder_uses_labels:
            return self.run_batched(self._edited_without_source_labels, (x, y_target), batch_size)
        return self.run_batched(self._edited, (x, y, y_target), batch_size)

    def _edit_variants(self, x, i, n, y, batch_size, noise_scale=1.0, seed=0):
        """Variant 0 decodes the posterior mean (the ``manipulate`` edit), the
        others ``mean + noise_scale·std·ε`` with seeded ``ε ~ N(0, I)``; all with
        ``y`` (or all labels off) and label ``i`` on."""
        y_target = np.zeros((len(x), self.num_labels), np.float32) if y is None else y.copy()
        y_target[:, i] = 1.0
        posterior = self.encode(x, y, batch_size=batch_size)
        mean, std = posterior["z_mean"], np.exp(0.5 * posterior["z_log_var"])
        rng = np.random.default_rng(seed)
        noise = [rng.standard_normal(mean.shape).astype(np.float32) for _ in range(n - 1)]
        codes = [mean] + [mean + noise_scale * std * eps for eps in noise]
        return np.stack([self.decode(z, y_target, batch_size=batch_size) for z in codes])


@keras.saving.register_keras_serializable(package="keras_csvae")
class CondVAE(ConditionalDecoderMixin, OneOptimizerModel):
    """Conditional VAE baseline: both networks see the labels.

        p(x, z | y) = p(x | z, y) · p(z),   p(z) = N(0, I),   q(z | x, y) diagonal Gaussian

    Objective, minimised per example: ``−β1·E_q[log p(x|z,y)] + β3·KL(q(z|x,y) ‖ p(z))``
    (the CSVAE's β1 and β3). ``z`` has the CSVAE's total latent size
    ``z_dim + k * w_dim`` to match its capacity; the decoder sees ``concat(z, y)``.

    Editing (paper: "changing y before decoding"): ``z`` = mean of ``q(z | x, y)``
    with the source labels ``y``, decoded with ``y_target``. The source labels
    are needed: ``manipulate(x, y_target, y=y)``.

    Args: ``LatentModel``'s (``BaselineMixin`` says which it uses: β1 and β3).

    Reference: Klys, Snell, Zemel. Learning Latent Subspaces in Variational
    Autoencoders. NeurIPS 2018 (baselines).
    """

    encoder_uses_labels = True

    def __init__(self, data_shape, num_labels, **kwargs):
        super().__init__(data_shape, num_labels, **kwargs)
        self.encoder = self.encoder_network(self.latent_dim, "encoder", num_labels=self.num_labels)
        self.decoder = self.build_decoder()
        self.built = True

    def encode_tensors(self, x, y):
        z_mean, z_log_var = self.encoder([x, tf.cast(y, tf.float32)])
        return {"z_mean": z_mean, "z_log_var": z_log_var}


@keras.saving.register_keras_serializable(package="keras_csvae")
class CondVAEInfo(ConditionalDecoderMixin, TwoOptimizerModel):
    """CondVAE-info baseline: a CondVAE whose ``z`` comes from ``x`` alone and
    is made uninformative of ``y`` by an adversary.

        p(x, z | y) = p(x | z, y) · p(z),   p(z) = N(0, I),   q(z | x) diagonal Gaussian
        adversary q_δ(y | z) = Π_i Bernoulli(y_i; σ(logit_i(z)))

    Max-min on cross-entropy ``CE = −Σ_i log q_δ(y_i | z)``, two optimisers
    (one step each per batch, like the CSVAE):

    - encoder and decoder minimise ``−β1·E_q[log p(x|z,y)] + β3·KL(q(z|x) ‖ p(z)) − β4·CE``
      (the negative ELBO minus the adversary's cross-entropy, i.e. they
      maximise it);
    - the adversary minimises ``β5·CE`` on ``stop_gradient(z)``.

    The encoders' term is unbounded below: a ``z`` that predicts the opposite
    label also has a large CE. This is the paper's baseline as described; the
    CSVAE itself uses the (bounded) adversary entropy instead.

    Editing: ``z`` = mean of ``q(z | x)`` decoded with ``y_target``; no source
    labels needed. ``latent_dim = z_dim + k * w_dim`` as for ``CondVAE``.

    Args: ``LatentModel``'s (``BaselineMixin`` says which it uses: β1, β3, β4,
    β5 and ``adversary_units``, the hidden widths of ``q_δ(y | z)``).

    Reference: Klys, Snell, Zemel. Learning Latent Subspaces in Variational
    Autoencoders. NeurIPS 2018 (baselines).
    """

    metric_names = METRIC_NAMES + ("adversary_loss",)
    encoder_uses_labels = False

    def __init__(self, data_shape, num_labels, **kwargs):
        super().__init__(data_shape, num_labels, **kwargs)
        self.encoder = self.encoder_network(self.latent_dim, "encoder")
        self.decoder = self.build_decoder()
        self.adversary = self.adversary_network(self.latent_dim)
        self.built = True

    @property
    def elbo_variables(self):
        return self.encoder.trainable_weights + self.decoder.trainable_weights

    @property
    def adversary_variables(self):
        return self.adversary.trainable_weights

    def encode_tensors(self, x, y=None):
        z_mean, z_log_var = self.encoder(x)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def call(self, inputs, training=False):
        """As ``BaselineMixin.call``, plus ``adversary_logits`` ``[batch, k]`` on ``z_mean``."""
        out = super().call(inputs, training=training)
        out["adversary_logits"] = self.adversary(out["z_mean"])
        return out

    def loss_terms(self, x, y, seed, training):
        terms, codes, y = super().loss_terms(x, y, seed, training)
        cross_entropy = losses.label_cross_entropy(y, self.adversary(codes["z"], training=training))
        terms["loss"] = terms["loss"] - self.betas.adversary_entropy * cross_entropy
        return terms, codes, y

    def adversary_loss(self, codes, y, training):
        """``β5·CE`` per example, with ``z`` held fixed."""
        logits = self.adversary(tf.stop_gradient(codes["z"]), training=training)
        return self.betas.adversary * losses.label_cross_entropy(y, logits)
