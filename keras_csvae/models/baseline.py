"""What the paper's three baselines (``VAE``, ``CondVAE``, ``CondVAEInfo``) share."""

from __future__ import annotations

import tensorflow as tf

from keras_csvae import losses
from keras_csvae.models.base import gaussian_sample
from keras_csvae.models.numpy_api import InputError

METRIC_NAMES = ("loss", "reconstruction_log_likelihood", "reconstruction_mse", "kl_z")


class BaselineMixin:
    """One latent ``z`` ``[batch, latent_dim]`` with ``p(z) = N(0, I)``, a diagonal
    Gaussian encoder and a Gaussian decoder ``p(x | z[, y]) = N(x_mean,
    decoder_scale² I)``, built by ``networks`` like the CSVAE's.

    The hyperparameters are the CSVAE's (``LatentModel``):

    - ``latent_dim = z_dim + k * w_dim``: the CSVAE's total latent size.
    - ``betas = [β1, …, β5]``: β1 weighs ``log p(x | ·)`` and β3 the KL of ``z``
      to ``N(0, I)`` (the CSVAE's weights of the same terms); ``CondVAEInfo``
      uses β4 for its encoders' adversarial term and β5 for its adversary's
      loss; β2 (the KL of ``w``) has no counterpart.
    - ``prior`` (the CSVAE's ``p(w | y)``) is unused; ``adversary_units`` is used
      by ``CondVAEInfo`` only.

    Subclasses set ``encoder_uses_labels`` / ``decoder_uses_labels``, build
    ``self.encoder`` and ``self.decoder`` and define ``encode_tensors(x, y)``
    (dict of ``z_mean``, ``z_log_var``) and ``decode_tensors(z, y)``, each of
    which ignores ``y`` when its network does not see it.
    """

    metric_names = METRIC_NAMES

    @property
    def latent_dim(self):
        return self.z_dim + self.num_labels * self.w_dim

    # -- forward passes (tensors in, tensors out) ------------------------------------------
    @staticmethod
    def unpack_inputs(data):
        """``x`` and ``y`` (or ``None``) from ``x``, ``(x,)``, ``(x, y[, w])`` or ``{"x", "y"}``."""
        if isinstance(data, dict):
            return data["x"], data.get("y")
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else None)
        return data, None

    def _labels_for(self, y, needed):
        if needed and y is None:
            raise InputError(f"{type(self).__name__} needs the labels y here; got none.")
        return None if y is None else tf.cast(y, tf.float32)

    def call(self, inputs, training=False):
        """Deterministic pass on the posterior mean.

        Args:
          inputs: ``x``, ``(x, y)`` or ``{"x": x, "y": y}``.

        Returns:
          dict of ``x_mean`` ``[batch, *data_shape]`` and ``z_mean``, ``z_log_var``
          ``[batch, latent_dim]``.
        """
        x, y = self.unpack_inputs(inputs)
        y = self._labels_for(y, self.encoder_uses_labels or self.decoder_uses_labels)
        out = self.encode_tensors(tf.cast(x, tf.float32), y)
        out["x_mean"] = self.decode_tensors(out["z_mean"], y)
        return out

    def reconstruct_tensors(self, x, y=None):
        """``E[x | E[z | x[, y]][, y]]`` ``[batch, *data_shape]``."""
        return self.decode_tensors(self.encode_tensors(x, y)["z_mean"], y)

    def loss_terms(self, x, y, seed, training):
        """One reparameterised sample of every term of the objective, each ``[batch]``.

        Returns ``(terms, codes, y)`` with ``codes`` the posterior (``z_mean``,
        ``z_log_var``) and its sample ``z``.
        """
        self.check_static_shapes(x, y)
        x = tf.cast(x, tf.float32)
        y = tf.cast(y, tf.float32)
        posterior = self.encode_tensors(x, y)
        z = gaussian_sample(posterior["z_mean"], posterior["z_log_var"], seed)
        x_mean = self.decode_tensors(z, y)
        terms = {
            "reconstruction_log_likelihood": losses.reconstruction_log_likelihood(x, x_mean, self.decoder_scale),
            "reconstruction_mse": losses.reconstruction_mse(x, x_mean),
            "kl_z": losses.kl_z(posterior["z_mean"], posterior["z_log_var"]),
        }
        terms["loss"] = losses.vae_objective(terms, self.betas)
        return terms, dict(posterior, z=z), y

    def predict_step(self, data):
        """``predict`` on ``(x, y)`` batches returns reconstructions ``[batch, *data_shape]``."""
        return self(data)["x_mean"]

    # -- export -------------------------------------------------------------------------------
    def z_spec(self, name="z"):
        return tf.TensorSpec([None, self.latent_dim], tf.float32, name=name)

    def serving_functions(self):
        """``encode``, ``decode``, ``reconstruct``, ``sample`` and the subclass's
        ``manipulate`` (see ``LatentModel.serving_functions``). ``y`` is an input
        exactly where the network that needs it is used:

        - ``encode(x[, y]) -> z_mean, z_log_var``;
        - ``decode(z[, y]) -> x_mean``;
        - ``reconstruct(x[, y]) -> x_reconstruction``: decodes the posterior mean;
        - ``sample(eps_z[, y]) -> x_sample``: decodes ``z = eps_z`` (``N(0, I)`` noise).
        """
        x_spec, y_spec = self.x_spec(), self.y_spec()

        def reconstruction(x, y=None):
            return {"x_reconstruction": self.reconstruct_tensors(x, y)}

        if self.encoder_uses_labels:
            encode = (lambda x, y: self.encode_tensors(x, y), [x_spec, y_spec])
        else:
            encode = (lambda x: self.encode_tensors(x, None), [x_spec])
        if self.decoder_uses_labels:
            decode = (lambda z, y: {"x_mean": self.decode_tensors(z, y)}, [self.z_spec("z"), y_spec])
            sample = (lambda eps_z, y: {"x_sample": self.decode_tensors(eps_z, y)}, [self.z_spec("eps_z"), y_spec])
        else:
            decode = (lambda z: {"x_mean": self.decode_tensors(z, None)}, [self.z_spec("z")])
            sample = (lambda eps_z: {"x_sample": self.decode_tensors(eps_z, None)}, [self.z_spec("eps_z")])
        if self.encoder_uses_labels or self.decoder_uses_labels:
            reconstruct = (lambda x, y: reconstruction(x, y), [x_spec, y_spec])
        else:
            reconstruct = (lambda x: reconstruction(x), [x_spec])
        return {
            "encode": encode,
            "decode": decode,
            "reconstruct": reconstruct,
            "sample": sample,
            "manipulate": self.serving_manipulate(),
        }

    def serving_manipulate(self):
        """``(fn, input_specs)`` of the exported ``manipulate -> x_edited``."""
        raise NotImplementedError

    # -- numpy --------------------------------------------------------------------------------
    def decode(self, z, y=None, batch_size=256):
        """``E[x | z[, y]]`` ``[n, *data_shape]`` from ``z`` ``[n, latent_dim]``
        (and ``y`` ``[n, k]``, or one row for all, when the decoder sees labels)."""
        z = self.check_codes(z, self.latent_dim)
        if not self.decoder_uses_labels:
            return self.run_batched(self.decode_tensors, (z,), batch_size)
        if y is None:
            raise InputError(f"{type(self).__name__}.decode needs labels y [n, {self.num_labels}].")
        return self.run_batched(self.decode_tensors, (z, self.check_label_rows(y, len(z), "rows in z")), batch_size)
