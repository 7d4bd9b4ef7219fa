"""The plain VAE baseline of the CSVAE paper, edited with attribute vectors."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_csvae.models.base import OneOptimizerModel
from keras_csvae.models.baseline import BaselineMixin
from keras_csvae.models.numpy_api import InputError


@keras.saving.register_keras_serializable(package="keras_csvae")
class VAE(BaselineMixin, OneOptimizerModel):
    """Unsupervised VAE baseline, edited with attribute vectors.

    Generative model and inference (labels are not seen by either network):

        p(x, z) = p(x | z) · p(z),   p(z) = N(0, I),   q(z | x) diagonal Gaussian

    Objective, minimised per example (averaged over the batch):
    ``−β1·E_q[log p(x|z)] + β3·KL(q(z|x) ‖ p(z))``, with the CSVAE's β1 and β3.
    ``latent_dim = z_dim + k * w_dim`` matches the CSVAE's total latent size.

    Editing (paper: "adding the difference between the mean latent codes of
    training examples with and without the attribute"). Per label ``i``:
    class means ``m_i^1 = mean(z | y_i = 1)``, ``m_i^0 = mean(z | y_i = 0)`` of
    the posterior means, the attribute vector ``d_i = m_i^1 − m_i^0`` and
    ``d̂_i = d_i / ‖d_i‖``. An edit sets the code's coordinate along ``d̂_i``
    to that of the target class mean, for each label in turn:

        z' = z + ((m_i^{y'_i} − z)·d̂_i) d̂_i

    which equals adding ``±d_i`` to a code that sits at its class mean, and
    needs no source label. With several labels whose ``d̂_i`` are not
    orthogonal, later labels' edits move earlier labels' coordinates a little.

    The class statistics are non-trainable weights (saved in ``.keras`` and
    used by the exported ``manipulate``), kept up to date by ``fit`` itself:
    each training step adds the batch's per-class sums and counts of the
    posterior means after decaying the stored ones by ``class_mean_decay``, so
    the means weigh the recent encoder most (an effective window of about
    ``1 / (1 − class_mean_decay)`` batches) and need no extra pass over the
    data. ``fit_attribute_vectors(x, y)`` replaces them by the exact means
    over ``x`` with the final encoder. Under a ``tf.distribute`` strategy the
    statistics are on-read sums over replicas.

    Args:
      class_mean_decay: in ``[0, 1]``; per-step decay of the class statistics
        (1 sums over all of training).
      the others: ``LatentModel``'s (see ``BaselineMixin`` for which it uses).

    Example:
      >>> model = VAE(data_shape=(3,), num_labels=1)
      >>> model.compile(optimizer="adam")
      >>> model.fit(dataset_of_x_y, epochs=10)
      >>> model.fit_attribute_vectors(x_train, y_train)  # optional: exact means
      >>> edited = model.manipulate(x, y_target=[[1]])

    Reference: Klys, Snell, Zemel. Learning Latent Subspaces in Variational
    Autoencoders. NeurIPS 2018 (baselines).
    """

    edit_rules = {"switched": True, "projection": False}

    def __init__(self, data_shape, num_labels, class_mean_decay=0.99, **kwargs):
        super().__init__(data_shape, num_labels, **kwargs)
        self.class_mean_decay = float(class_mean_decay)
        if not 0.0 <= self.class_mean_decay <= 1.0:
            raise ValueError(f"class_mean_decay must be in [0, 1], got {class_mean_decay}.")
        self.encoder = self.encoder_network(self.latent_dim, "encoder")
        self.decoder = self.decoder_network(self.latent_dim)
        # [2, k, latent_dim] and [2, k]: index 0 is "label absent", 1 "present".
        statistic = dict(trainable=False, autocast=False, dtype="float32", aggregation="sum", synchronization="on_read")
        self.class_sums = keras.Variable(
            np.zeros((2, self.num_labels, self.latent_dim), np.float32), name="class_sums", **statistic
        )
        self.class_counts = keras.Variable(np.zeros((2, self.num_labels), np.float32), name="class_counts", **statistic)
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(class_mean_decay=self.class_mean_decay)
        return config

    def encode_tensors(self, x, y=None):
        z_mean, z_log_var = self.encoder(x)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def decode_tensors(self, z, y=None):
        return self.decoder(tf.cast(z, tf.float32))

    # -- class statistics ----------------------------------------------------------------------
    @staticmethod
    def class_statistics(z, y):
        """Per-class sums ``[2, k, latent_dim]`` and counts ``[2, k]`` of codes ``z`` ``[n, latent_dim]``."""
        y = tf.cast(y, z.dtype)
        membership = tf.stack([1.0 - y, y])  # [2, n, k]
        return tf.einsum("cnk,nd->ckd", membership, z), tf.reduce_sum(membership, axis=1)

    def observe_training_batch(self, codes, y):
        """Decays the stored class statistics and adds the batch's (posterior means)."""
        sums, counts = self.class_statistics(tf.stop_gradient(codes["z_mean"]), y)
        self.class_sums.assign(self.class_mean_decay * self.class_sums + sums)
        self.class_counts.assign(self.class_mean_decay * self.class_counts + counts)

    def fit_attribute_vectors(self, x, y, batch_size=256):
        """Sets the class statistics to the exact ones of the posterior means of ``x``.

        Args:
          x: ``[n, *data_shape]``; y: ``[n, k]`` labels in {0, 1}.

        Returns:
          the attribute vectors ``d`` ``[k, latent_dim]`` (see ``attribute_vectors``).
        """
        x, y = self.check_arrays(x, y)
        z = self.encode(x, batch_size=batch_size)["z_mean"]
        sums, counts = self.class_statistics(tf.constant(z), tf.constant(y))
        self.class_sums.assign(sums)
        self.class_counts.assign(counts)
        return self.attribute_vectors

    @property
    def class_means(self):
        """``[2, k, latent_dim]``: ``[0, i]`` is ``mean(z | y_i = 0)``, ``[1, i]``
        ``mean(z | y_i = 1)``; NaN where unseen."""
        sums = np.asarray(self.class_sums.numpy(), np.float64)
        counts = np.asarray(self.class_counts.numpy(), np.float64)[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan).astype(np.float32)

    @property
    def attribute_vectors(self):
        """``d_i = mean(z | y_i = 1) − mean(z | y_i = 0)``, ``[k, latent_dim]``; NaN where a class is unseen."""
        means = self.class_means
        return means[1] - means[0]

    def _class_means_tensors(self):
        """Class means ``[2, k, latent_dim]`` and counts ``[2, k]`` as tensors (0 where unseen)."""
        counts = tf.convert_to_tensor(self.class_counts)
        return tf.convert_to_tensor(self.class_sums) / tf.maximum(counts, 1e-30)[..., None], counts

    def attribute_directions(self):
        """``d̂`` ``[k, latent_dim]`` (zero for labels without a vector) and the class
        means' coordinates along them, ``[2, k]``. Plain TensorFlow."""
        means, counts = self._class_means_tensors()
        d = means[1] - means[0]
        norm = tf.norm(d, axis=-1, keepdims=True)
        valid = tf.reduce_all(counts > 0, axis=0)[:, None] & (norm > 0)
        d_hat = tf.where(valid, d / tf.maximum(norm, 1e-30), tf.zeros_like(d))
        return d_hat, tf.einsum("ckd,kd->ck", means, d_hat)

    def _check_fitted(self, labels):
        counts = self.class_counts.numpy()
        missing = [self.label_names[i] for i in labels if not np.all(counts[:, i] > 0)]
        if missing:
            raise InputError(
                f"No attribute vector for {', '.join(missing)}: no examples with and without it were seen. "
                "Train with fit on labelled data, or call fit_attribute_vectors(x, y)."
            )

    # -- editing (tensors) ----------------------------------------------------------------------
    def edit_codes_tensors(self, z, target_coordinates, labels=None):
        """``z + (t_i − z·d̂_i) d̂_i`` for each label ``i`` of ``labels`` (default all) in turn.

        Args:
          z: ``[batch, latent_dim]``.
          target_coordinates: ``[batch, k]``, the wanted coordinate along each ``d̂_i``.
        """
        d_hat, _ = self.attribute_directions()
        z = tf.cast(z, tf.float32)
        target_coordinates = tf.cast(target_coordinates, tf.float32)
        for i in range(self.num_labels) if labels is None else labels:
            step = target_coordinates[:, i] - tf.linalg.matvec(z, d_hat[i])
            z = z + step[:, None] * d_hat[i][None, :]
        return z

    def target_coordinates(self, y_target):
        """``[batch, k]``: the coordinate of ``m_i^{y_target_i}`` along ``d̂_i``."""
        _, coordinates = self.attribute_directions()
        y_target = tf.cast(y_target, tf.float32)
        return y_target * coordinates[1] + (1.0 - y_target) * coordinates[0]

    def _edited(self, x, y_target):
        z = self.encoder(x)[0]
        return self.decode_tensors(self.edit_codes_tensors(z, self.target_coordinates(y_target)))

    def _edited_switched(self, x, y, y_target):
        """The paper's rule ``μθ(μφ(x) − m_i^{y_i} + m_i^{y'_i})`` for the
        switched labels only: ``z' = z + Σ_i (y'_i − y_i)·d_i``."""
        z = self.encoder(x)[0]
        means, _ = self._class_means_tensors()
        step = tf.cast(y_target, tf.float32) - tf.cast(y, tf.float32)  # [batch, k], 0 where not switched
        return self.decode_tensors(z + tf.matmul(step, means[1] - means[0]))

    def serving_manipulate(self):
        """``manipulate(x, y, y_target) -> x_edited``: the paper's attribute-vector
        edit of the switched labels (``_edited_switched``)."""
        return (
            (lambda x, y, y_target: {"x_edited": self._edited_switched(x, y, y_target)}),
            [self.x_spec(), self.y_spec(), self.y_spec("y_target")],
        )

    # -- editing (numpy) ---------------------------------------------------------------------------
    def edit_codes(self, z, y_target):
        """The edit rule on codes: ``z`` ``[n, latent_dim]`` → ``z'`` ``[n, latent_dim]``."""
        z = self.check_codes(z, self.latent_dim)
        y_target = self.check_label_rows(y_target, len(z), "rows in z", "target label rows")
        self._check_fitted(range(self.num_labels))
        return self.edit_codes_tensors(tf.constant(z), self.target_coordinates(tf.constant(y_target))).numpy()

    def _manipulate(self, x, y_target, y, rule, batch_size):
        """``E[x | z']`` with ``z`` = mean of ``q(z|x)`` and ``z'`` by ``rule``:

        - ``"switched"``: the paper's ``z' = z − m_i^{y_i} + m_i^{y'_i}`` for every
          label with ``y'_i ≠ y_i``; the others are not touched.
        - ``"projection"``: the coordinate of ``z`` along every ``d̂_i`` is set to
          that of the target class mean (class docstring); needs no source labels.
        """
        self._check_fitted(range(self.num_labels))
        if rule == "projection":
            return self.run_batched(self._edited, (x, y_target), batch_size)
        return self.run_batched(self._edited_switched, (x, y, y_target), batch_size)

    def _edit_variants(self, x, i, n, y, batch_size, spread=0.5):
        """Switches label ``i`` on with ``n`` strengths: variant ``s`` sets the
        coordinate along ``d̂_i`` to that of ``m^0 + s·d_i``, for ``s`` in
        ``1 + spread·linspace(−1, 1, n)`` (``s = 1`` is ``manipulate``'s edit;
        ``n = 1`` gives only it). Other labels, and ``y``, are left as they are:
        a VAE's only style control is this one direction.
        """
        self._check_fitted([i])
        strengths = 1.0 + spread * np.linspace(-1.0, 1.0, n) if n > 1 else np.ones(1)
        _, coordinates = self.attribute_directions()
        z = self.encode(x, batch_size=batch_size)["z_mean"]
        variants = []
        for s in strengths:
            target = coordinates[0] + float(s) * (coordinates[1] - coordinates[0])
            edited = self.edit_codes_tensors(tf.constant(z), tf.tile(target[None, :], [len(z), 1]), labels=[i])
            variants.append(self.decode(edited.numpy(), batch_size=batch_size))
        return np.stack(variants)
