"""The Conditional Subspace VAE (Klys, Snell, Zemel, NeurIPS 2018)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_csvae import losses
from keras_csvae.models.base import TwoOptimizerModel, gaussian_sample
from keras_csvae.models.numpy_api import InputError
from serving.runtime.contract import style_grid

# The edit-locality pass decodes one edit for every EDIT_LOCALITY_EVERY-th
# example (the first quarter of a batch): the extra decoder pass is the
# step's largest cost, and a quarter keeps the step at 1.22× the plain one
# (bench/bench_edit_locality.py, BENCHMARKS.md).
EDIT_LOCALITY_EVERY = 4

METRIC_NAMES = (
    "loss",
    "reconstruction_log_likelihood",
    "reconstruction_mse",
    "kl_w",
    "kl_z",
    "adversary_negative_entropy",
    "adversary_loss",
)


@keras.saving.register_keras_serializable(package="keras_csvae")
class CSVAE(TwoOptimizerModel):
    """Conditional Subspace VAE.

    Generative model, with ``k`` binary labels and ``w = (w_1, …, w_k)``:

        p(x, y, w, z) = p(x | w, z) · p(w | y) · p(z) · p(y)
        p(z) = N(0, I),   p(w | y) = Π_i p(w_i | y_i)  (fixed, see ``WPrior``)

    Inference: ``q(z | x)`` and ``q(w | x, y)``, diagonal Gaussians; an
    adversary ``q_δ(y | z)`` (Bernoulli per label) that the encoders are trained
    to leave maximally uncertain, so that label information lives in ``w``.

    Shapes: ``x`` ``[batch, *data_shape]``, ``y`` ``[batch, k]``,
    ``z`` ``[batch, z_dim]``, ``w`` ``[batch, k * w_dim]`` (label ``i`` owns
    columns ``i*w_dim:(i+1)*w_dim``).

    Args: ``LatentModel``'s, all of them used (``adversary_units`` are the
    hidden widths of ``q_δ(y | z)``).

    Example:
      >>> model = CSVAE(data_shape=(3,), num_labels=1)
      >>> model.compile(optimizer="adam", adversary_optimizer="adam")
      >>> model.fit(dataset_of_x_y, epochs=10)
      >>> edited = model.manipulate(x, y_target=[[1]])

    Reference: Klys, Snell, Zemel. Learning Latent Subspaces in Variational
    Autoencoders. NeurIPS 2018.
    """

    metric_names = METRIC_NAMES
    encoder_uses_labels = True  # q(w | x, y)
    edit_rules = {"switched": True, "prior": False}

    def __init__(self, data_shape, num_labels, **kwargs):
        super().__init__(data_shape, num_labels, **kwargs)
        self.z_encoder = self.encoder_network(self.z_dim, "z_encoder")
        self.w_encoder = self.encoder_network(self.w_total_dim, "w_encoder", num_labels=self.num_labels)
        self.decoder = self.decoder_network(self.w_total_dim + self.z_dim)
        self.adversary = self.adversary_network(self.z_dim)
        if self.edit_locality:
            self.trackers["edit_change"] = keras.metrics.Mean(name="edit_change")
        self.built = True

    @property
    def w_total_dim(self):
        return self.num_labels * self.w_dim

    # -- the two optimisers' variables ----------------------------------------------
    @property
    def elbo_variables(self):
        return self.z_encoder.trainable_weights + self.w_encoder.trainable_weights + self.decoder.trainable_weights

    @property
    def adversary_variables(self):
        return self.adversary.trainable_weights

    # -- forward passes (tensors in, tensors out) --------------------------------------
    def encode_tensors(self, x, y):
        z_mean, z_log_var = self.z_encoder(x)
        w_mean, w_log_var = self.w_encoder([x, y])
        return {"z_mean": z_mean, "z_log_var": z_log_var, "w_mean": w_mean, "w_log_var": w_log_var}

    def decode_tensors(self, z, w):
        """``E[x | w, z]``: the decoder sees ``concat(w, z)``."""
        return self.decoder(tf.concat([tf.cast(w, tf.float32), tf.cast(z, tf.float32)], axis=-1))

    def z_mean_tensors(self, x):
        """``E[z | x]`` ``[batch, z_dim]``."""
        return self.z_encoder(tf.cast(x, tf.float32))[0]

    def edit_tensors(self, x, w):
        """The paper's edit: ``E[x | w, E[z|x]]`` ``[batch, *data_shape]`` for ``w`` ``[batch, k*w_dim]``."""
        return self.decode_tensors(self.z_mean_tensors(x), w)

    def reconstruct_tensors(self, x, y):
        """``E[x | E[w|x,y], E[z|x]]`` ``[batch, *data_shape]``."""
        return self.decode_tensors(*self._posterior_means(x, y))

    def switched_edit_tensors(self, x, y, y_target):
        """The per-label edit ``[batch, *data_shape]`` (``edited_codes``' "switched"
        rule in TensorFlow): labels with ``y_target_j ≠ y_j`` get ``W_j`` at
        ``WPrior.edit_targets`` (with ``edit_strength`` 1: the mean of
        ``p(w_j | y_target_j)``), the others keep ``E[w_j | x, y]``; ``z = E[z | x]``."""
        y = tf.cast(y, tf.float32)
        y_target = tf.cast(y_target, tf.float32)
        z_mean, w_posterior = self._posterior_means(x, y)
        w_target = self.prior.edit_targets(y_target, self.w_dim, self.edit_strength)
        keep = tf.repeat(tf.equal(y, y_target), self.w_dim, axis=-1)
        return self.decode_tensors(z_mean, tf.where(keep, w_posterior, w_target))

    def call(self, inputs, training=False):
        """Deterministic pass on posterior means.

        Args:
          inputs: ``(x, y)`` or ``{"x": x, "y": y}``.

        Returns:
          dict of ``x_mean`` ``[batch, *data_shape]``, ``z_mean``, ``z_log_var``
          ``[batch, z_dim]``, ``w_mean``, ``w_log_var`` ``[batch, k*w_dim]``,
          ``adversary_logits`` ``[batch, k]``.
        """
        x, y = (inputs["x"], inputs["y"]) if isinstance(inputs, dict) else inputs
        out = self.encode_tensors(x, y)
        out["x_mean"] = self.decode_tensors(out["z_mean"], out["w_mean"])
        out["adversary_logits"] = self.adversary(out["z_mean"])
        return out

    def loss_terms(self, x, y, seed, training):
        """One reparameterised sample of every term of the objective, each ``[batch]``."""
        self.check_static_shapes(x, y)
        x = tf.cast(x, tf.float32)
        y = tf.cast(y, tf.float32)
        posterior = self.encode_tensors(x, y)
        seed_z, seed_w = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = gaussian_sample(posterior["z_mean"], posterior["z_log_var"], seed_z)
        w = gaussian_sample(posterior["w_mean"], posterior["w_log_var"], seed_w)
        x_mean = self.decode_tensors(z, w)
        adversary_logits = self.adversary(z, training=training)
        terms = {
            "reconstruction_log_likelihood": losses.reconstruction_log_likelihood(x, x_mean, self.decoder_scale),
            "reconstruction_mse": losses.reconstruction_mse(x, x_mean),
            "kl_w": losses.kl_w(posterior["w_mean"], posterior["w_log_var"], y, self.prior, self.w_dim),
            "kl_z": losses.kl_z(posterior["z_mean"], posterior["z_log_var"]),
            "adversary_negative_entropy": losses.adversary_negative_entropy(adversary_logits),
        }
        terms["loss"] = losses.elbo_objective(terms, self.betas)
        if self.edit_locality:
            n = (tf.shape(x)[0] + EDIT_LOCALITY_EVERY - 1) // EDIT_LOCALITY_EVERY  # see EDIT_LOCALITY_EVERY
            seed_flip = tf.random.experimental.stateless_fold_in(seed, 1)
            x_edited = self.decode_tensors(z[:n], self.flipped_w(w[:n], y[:n], seed_flip))
            terms["edit_change"] = losses.edit_change(x_edited, x_mean[:n], self.edit_locality_saturation)
            terms["loss"] += self.edit_locality * tf.reduce_mean(terms["edit_change"])
        return terms, z, y

    def flipped_w(self, w, y, seed):
        """``w`` ``[batch, k*w_dim]`` with one random label ``i`` per example
        moved to a draw of ``p(w_i | 1 − y_i)``, the others kept: the edits the
        ``edit_locality`` penalty keeps local. ``seed``: stateless ``[2]``."""
        seed_label, seed_w = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        y = tf.cast(y, tf.float32)
        label = tf.random.stateless_uniform([tf.shape(y)[0]], seed_label, maxval=self.num_labels, dtype=tf.int32)
        flip = tf.one_hot(label, self.num_labels)
        mean, scale = self.prior.parameters(tf.abs(y - flip), self.w_dim)
        w_flipped = mean + scale * tf.random.stateless_normal(tf.shape(mean), seed_w)
        moved = tf.repeat(flip > 0, self.w_dim, axis=-1)
        return tf.where(moved, tf.cast(w_flipped, w.dtype), w)

    def adversary_loss(self, z, y, training):
        """``−N`` per example: the adversary's negative log-likelihood, ``z`` held fixed."""
        logits = self.adversary(tf.stop_gradient(z), training=training)
        return -self.betas.adversary * losses.adversary_log_likelihood(y, logits)

    def predict_step(self, data):
        """``predict`` on ``(x, y)`` batches returns reconstructions ``[batch, *data_shape]``."""
        x, y = data[:2]
        return self.decode_tensors(*self._posterior_means(x, y))

    # -- export -------------------------------------------------------------------------------
    def serving_functions(self):
        """``encode``, ``decode``, ``reconstruct``, ``manipulate``, ``edit_at`` and
        ``sample`` (see ``LatentModel.serving_functions``).

        - ``manipulate(x, y, y_target) -> x_edited``: the per-label edit
          (``switched_edit_tensors``): labels whose target differs from the
          source label ``y`` move to the target prior's mean (a label switched
          on: ``edit_strength`` times as far from the absent mean), the others
          keep their posterior ``w``. The paper's rule (every ``W_j`` at the target
          prior's mean) is ``edit_at`` with ``w`` = that mean.
        - ``edit_at(x, w) -> x_edited``: ``z`` from ``x``, ``w`` chosen by the
          caller (a style, a traversal point; label ``i`` owns columns
          ``i*w_dim:(i+1)*w_dim``).
        - ``sample(eps_z, eps_w, y) -> x_sample``: ``z = eps_z``,
          ``w = mean(y) + scale(y) · eps_w`` with caller-given noise.
        """
        w_spec = lambda name: tf.TensorSpec([None, self.w_total_dim], tf.float32, name=name)  # noqa: E731
        z_spec = lambda name: tf.TensorSpec([None, self.z_dim], tf.float32, name=name)  # noqa: E731

        def encode(x, y):
            return self.encode_tensors(x, y)

        def decode(z, w):
            return {"x_mean": self.decode_tensors(z, w)}

        def reconstruct(x, y):
            z_mean, w_mean = self._posterior_means(x, y)
            return {"x_reconstruction": self.decode_tensors(z_mean, w_mean)}

        def manipulate(x, y, y_target):
            return {"x_edited": self.switched_edit_tensors(x, y, y_target)}

        def edit_at(x, w):
            return {"x_edited": self.edit_tensors(x, w)}

        def sample(eps_z, eps_w, y):
            w_mean, w_scale = self.prior.parameters(y, self.w_dim)
            return {"x_sample": self.decode_tensors(eps_z, w_mean + w_scale * eps_w)}

        return {
            "encode": (encode, [self.x_spec(), self.y_spec()]),
            "decode": (decode, [z_spec("z"), w_spec("w")]),
            "reconstruct": (reconstruct, [self.x_spec(), self.y_spec()]),
            "manipulate": (manipulate, [self.x_spec(), self.y_spec(), self.y_spec("y_target")]),
            "edit_at": (edit_at, [self.x_spec(), w_spec("w")]),
            "sample": (sample, [z_spec("eps_z"), w_spec("eps_w"), self.y_spec()]),
        }

    # -- editing API (numpy in, numpy out; see ``NumpyAPI``) -------------------------------------
    def _posterior_means(self, x, y):
        out = self.encode_tensors(tf.cast(x, tf.float32), tf.cast(y, tf.float32))
        return out["z_mean"], out["w_mean"]

    def decode(self, z, w, batch_size=256):
        """``E[x | w, z]``, ``[n, *data_shape]``, from ``z`` ``[n, z_dim]`` and ``w`` ``[n, k*w_dim]``."""
        z = self.check_codes(z, self.z_dim)
        w = self.check_codes(w, self.w_total_dim, name="w")
        if len(z) != len(w):
            raise InputError(f"{len(z)} rows in z but {len(w)} in w.")
        return self.run_batched(self.decode_tensors, (z, w), batch_size)

    def target_w(self, y_target, w_points=None, sample=False, seed=0):
        """``w`` for target labels: ``WPrior.edit_targets`` per label (with
        ``edit_strength`` 1: the mean of ``p(w | y_target)``), or that point plus
        the prior's noise (``sample=True``, seeded: a sample of ``p(w | y_target)``
        shifted to it), with chosen labels' subspaces set to explicit points.

        Args:
          y_target: ``[n, k]`` (or ``[k]``) target labels.
          w_points: optional ``{label (name or index): point}`` with a point
            ``[w_dim]`` or ``[n, w_dim]`` in that label's subspace ``W_i``.
          sample: draw from the prior instead of taking its mean.
          seed: seed of that draw.

        Returns:
          ``w`` ``[n, k*w_dim]`` float32.
        """
        y_target = self.check_arrays(y=y_target)
        w = self.prior.edit_targets(tf.constant(y_target), self.w_dim, self.edit_strength).numpy()
        if sample:
            _, scale = self.prior.parameters(tf.constant(y_target), self.w_dim)
            w = w + scale.numpy() * np.random.default_rng(seed).standard_normal(w.shape).astype(np.float32)
        for label, point in (w_points or {}).items():
            i = self.label_index(label)
            point = np.asarray(point, np.float32)
            if point.shape[-1] != self.w_dim or point.ndim > 2:
                raise InputError(
                    f"A point in W_{i} must have shape [{self.w_dim}] or [n, {self.w_dim}], got {point.shape}."
                )
            w[:, i * self.w_dim : (i + 1) * self.w_dim] = point
        return w

    def edited_codes(self, x, y_target, y=None, rule=None, batch_size=256, *, w_points=None, sample=False, seed=0):
        """The latent codes ``manipulate`` decodes: ``{"z": [n, z_dim], "w": [n, k*w_dim]}``.

        ``z`` is the mean of ``q(z|x)``. Two rules choose ``w``:

        - ``"switched"`` (the default when the source labels ``y`` ``[n, k]``
          are given): only the labels that change (``y_target_j ≠ y_j``) and
          those named in ``w_points`` get ``target_w``'s subspaces; every other
          ``W_j`` keeps its posterior mean ``E[w_j | x, y]``, so the styles of
          the attributes not being edited survive the edit.
        - ``"prior"`` (the paper's rule; the default without ``y``): every
          ``W_j`` is ``target_w(y_target, ...)``'s.

        ``w_points``, ``sample`` and ``seed``: see ``target_w``.
        """
        x, y_target, y, rule = self.edit_inputs(x, y_target, y, rule)
        return self._edited_codes(x, y_target, y, rule, batch_size, w_points=w_points, sample=sample, seed=seed)

    def _edited_codes(self, x, y_target, y, rule, batch_size, w_points=None, sample=False, seed=0):
        w = self.target_w(y_target, w_points=w_points, sample=sample, seed=seed)
        if rule == "prior":
            return {"z": self.run_batched(self.z_mean_tensors, (x,), batch_size), "w": w}
        posterior = self.run_batched(self.encode_tensors, (x, y), batch_size)
        keep = y == y_target
        for label in w_points or {}:
            keep[:, self.label_index(label)] = False
        w = np.where(np.repeat(keep, self.w_dim, axis=-1), posterior["w_mean"], w)
        return {"z": posterior["z_mean"], "w": w}

    def _manipulate(self, x, y_target, y, rule, batch_size, **knobs):
        """``E[x | w, z]`` at the codes of ``edited_codes`` (its ``knobs``:
        ``w_points``, ``sample``, ``seed``)."""
        codes = self._edited_codes(x, y_target, y, rule, batch_size, **knobs)
        return self.run_batched(self.decode_tensors, (codes["z"], codes["w"]), batch_size)

    def subspace_grid(self, label, n=5, extent=2.0):
        """A regular ``n×n`` grid of points in ``W_label`` around the prior of
        ``y_label = 1``: ``mean_present ± extent·scale_present`` per axis.

        Returns ``[n*n, w_dim]`` (``w_dim`` must be 2); row-major, first axis slowest.
        """
        self.label_index(label)
        if self.w_dim != 2:
            raise InputError("subspace_grid draws 2-D grids; this model has w_dim != 2.")
        return style_grid(dataclasses.asdict(self.prior), self.w_dim, side=n, extent=extent)

    def _edit_variants(self, x, i, n, y, batch_size, extent=2.0):
        """One edit per point of a ``√n × √n`` grid over ``W_i`` (``subspace_grid``
        with ``extent``): the styles the model learned. With ``y`` the other
        labels keep their posterior ``w`` (the "switched" rule)."""
        side = max(int(round(np.sqrt(n))), 1)
        return self.traverse(x, i, self.subspace_grid(i, n=side, extent=extent), y=y, batch_size=batch_size)

    def traverse(self, x, label, points, y_target=None, y=None, batch_size=256):
        """Decodes each ``x`` with ``W_label`` set to each of ``points`` ``[p, w_dim]``.

        With source labels ``y`` ``[n, k]``, the other subspaces keep their
        posterior means ``E[w_j | x, y]``; without, they sit at the prior mean
        of ``y_target`` (default: ``label`` on, others off).
        Returns ``[p, n, *data_shape]``.
        """
        i = self.label_index(label)
        if y_target is None and y is None:
            y_target = np.eye(self.num_labels, dtype=np.float32)[i : i + 1]  # one row, repeated for every x
        elif y_target is None:
            y_target = self.check_arrays(y=y).copy()
            y_target[:, i] = 1
        x, y_target, y = self.check_edit_arrays(x, y_target, y)
        points = np.asarray(points, np.float32)
        # Encoded once, decoded at every point.
        if y is not None:
            posterior = self.run_batched(self.encode_tensors, (x, y), batch_size)
            z_mean, w_base = posterior["z_mean"], posterior["w_mean"]
        else:
            z_mean, w_base = self.run_batched(self.z_mean_tensors, (x,), batch_size), self.target_w(y_target)
        columns = slice(i * self.w_dim, (i + 1) * self.w_dim)
        frames = []
        for p in points:
            w = w_base.copy()
            w[:, columns] = p
            frames.append(self.run_batched(self.decode_tensors, (z_mean, w), batch_size))
        return np.stack(frames)
