"""The plain VAE baseline of the CSVAE paper, and what its three baselines share."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import keras

from keras_csvae import losses
from keras_csvae.models import networks
from keras_csvae.models.base import InputError, OneOptimizerModel, gaussian_sample

METRIC_NAMES = ("loss", "reconstruction_log_likelihood", "reconstruction_mse", "kl_z")


class BaselineMixin:
    """What the paper's three baselines (``VAE``, ``CondVAE``, ``CondVAEInfo``) share.

    One latent ``z`` ``[batch, latent_dim]`` with ``p(z) = N(0, I)``, a diagonal
    Gaussian encoder and a Gaussian decoder ``p(x | z[, y]) = N(x_mean,
    decoder_scale² I)``, built by ``networks`` like the CSVAE's.

    Hyperparameters are the CSVAE's, so that one ``model_kwargs`` builds all
    four models and a comparison is fair:

    - ``latent_dim = z_dim + k * w_dim``: the CSVAE's total latent size.
    - ``betas = [β1, …, β5]``: β1 weighs ``log p(x | ·)`` and β3 the KL of ``z``
      to ``N(0, I)`` (the CSVAE's weights of the same terms); ``CondVAEInfo``
      uses β4 for its encoders' adversarial term and β5 for its adversary's
      loss; β2 (the KL of ``w``) has no counterpart.
    - ``prior`` (the CSVAE's ``p(w | y)``) is unused; ``adversary_units`` is used
      by ``CondVAEInfo`` only. Both are kept in the config all the same.

    Subclasses set ``encoder_uses_labels`` / ``decoder_uses_labels``, build
    ``self.encoder`` and ``self.decoder`` and define ``encode_tensors(x, y)``
    (dict of ``z_mean``, ``z_log_var``) and ``decode_tensors(z, y)``, each of
    which ignores ``y`` when its network does not see it.
    """

    metric_names = METRIC_NAMES
    encoder_uses_labels = False
    decoder_uses_labels = False

    def init_baseline(self, z_dim, w_dim, adversary_units, prior, betas):
        self.z_dim = int(z_dim)
        self.w_dim = int(w_dim)
        self.adversary_units = tuple(int(u) for u in adversary_units)
        self.prior = losses.as_w_prior(prior)
        self.betas = losses.as_betas(betas)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    @property
    def latent_dim(self):
        return self.z_dim + self.num_labels * self.w_dim

    def baseline_config(self):
        return dict(
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            adversary_units=list(self.adversary_units),
            prior=dataclasses.asdict(self.prior),
            betas=self.betas.as_list(),
        )

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
            return {"x_reconstruction": self.decode_tensors(self.encode_tensors(x, y)["z_mean"], y)}

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

    # -- numpy front end ----------------------------------------------------------------------
    def _checked(self, x, y, needed, what):
        if needed and y is None:
            raise InputError(
                f"{type(self).__name__}.{what} needs the source labels y ([n, {self.num_labels}]: "
                f"{', '.join(self.label_names)})."
            )
        if y is None:
            return self.check_arrays(x), None
        return self.check_arrays(x, y)

    def _run(self, fn, x, y, batch_size):
        """``run_batched`` of ``fn(x, y)``, with ``y`` left out when it is ``None``."""
        return self.run_batched(fn, (x,) if y is None else (x, y), batch_size)

    def encode(self, x, y=None, batch_size=256):
        """``q(z | x[, y])`` parameters: dict of ``z_mean``, ``z_log_var`` ``[n, latent_dim]``.

        ``y`` is required when the encoder sees labels (``CondVAE``), else checked
        and ignored.
        """
        x, y = self._checked(x, y, self.encoder_uses_labels, "encode")
        return self._run(self.encode_tensors, x, y if self.encoder_uses_labels else None, batch_size)

    def decode(self, z, y=None, batch_size=256):
        """``E[x | z[, y]]`` ``[n, *data_shape]`` from ``z`` ``[n, latent_dim]``
        (and ``y`` ``[n, k]`` when the decoder sees labels)."""
        z = self.check_codes(z, self.latent_dim)
        if self.decoder_uses_labels:
            if y is None:
                raise InputError(f"{type(self).__name__}.decode needs labels y [n, {self.num_labels}].")
            y = self.check_arrays(y=y)
            if len(y) == 1:
                y = np.repeat(y, len(z), axis=0)
            if len(y) != len(z):
                raise InputError(f"{len(z)} rows in z but {len(y)} in y.")
            return self.run_batched(self.decode_tensors, (z, y), batch_size)
        return self.run_batched(self.decode_tensors, (z,), batch_size)

    def reconstruct_tensors(self, x, y=None):
        """``E[x | E[z | x[, y]][, y]]`` ``[batch, *data_shape]``."""
        return self.decode_tensors(self.encode_tensors(x, y)["z_mean"], y)

    def reconstruct(self, x, y=None, batch_size=256):
        """Decodes the posterior mean: ``E[x | E[z | x[, y]][, y]]``, ``[n, *data_shape]``."""
        needed = self.encoder_uses_labels or self.decoder_uses_labels
        x, y = self._checked(x, y, needed, "reconstruct")
        y = y if needed else None
        return self._run(self.reconstruct_tensors, x, y, batch_size)


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
      data_shape, num_labels, label_names, architecture, hidden_units,
        conv_filters, dense_units, decoder_filters, output_activation,
        decoder_scale, seed: see ``LatentModel``.
      z_dim, w_dim: as the CSVAE's; the latent size is ``z_dim + k * w_dim``.
      adversary_units, prior: the CSVAE's; unused, kept in the config.
      betas: ``[β1, …, β5]`` as the CSVAE's; β1 and β3 are used.
      class_mean_decay: in ``[0, 1]``; per-step decay of the class statistics
        (1 sums over all of training).

    Example:
      >>> model = VAE(data_shape=(3,), num_labels=1)
      >>> model.compile(optimizer="adam")
      >>> model.fit(dataset_of_x_y, epochs=10)
      >>> model.fit_attribute_vectors(x_train, y_train)  # optional: exact means
      >>> edited = model.manipulate(x, y_target=[[1]])

    Reference: Klys, Snell, Zemel. Learning Latent Subspaces in Variational
    Autoencoders. NeurIPS 2018 (baselines).
    """

    def __init__(
        self,
        data_shape,
        num_labels,
        z_dim=8,
        w_dim=2,
        adversary_units=(64, 64),
        prior=None,
        betas=None,
        class_mean_decay=0.99,
        **kwargs,
    ):
        super().__init__(data_shape, num_labels, **kwargs)
        self.init_baseline(z_dim, w_dim, adversary_units, prior, betas)
        self.class_mean_decay = float(class_mean_decay)
        if not 0.0 <= self.class_mean_decay <= 1.0:
            raise ValueError(f"class_mean_decay must be in [0, 1], got {class_mean_decay}.")
        self.encoder = networks.gaussian_encoder(self.data_shape, self.latent_dim, name="encoder", **self.network_kwargs())
        self.decoder = networks.decoder(self.data_shape, self.latent_dim, name="decoder", **self.decoder_kwargs())
        # [2, k, latent_dim] and [2, k]: index 0 is "label absent", 1 "present".
        statistic = dict(trainable=False, autocast=False, dtype="float32", aggregation="sum", synchronization="on_read")
        self.class_sums = keras.Variable(
            np.zeros((2, self.num_labels, self.latent_dim), np.float32), name="class_sums", **statistic
        )
        self.class_counts = keras.Variable(np.zeros((2, self.num_labels), np.float32), name="class_counts", **statistic)
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(self.baseline_config(), class_mean_decay=self.class_mean_decay)
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
        """``[2, k, latent_dim]``: ``[0, i]`` is ``mean(z | y_i = 0)``, ``[1, i]`` ``mean(z | y_i = 1)``; NaN where unseen."""
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
        y_target = self.check_arrays(y=y_target)
        if len(y_target) == 1:
            y_target = np.repeat(y_target, len(z), axis=0)
        if len(y_target) != len(z):
            raise InputError(f"{len(z)} rows in z but {len(y_target)} target label rows.")
        self._check_fitted(range(self.num_labels))
        return self.edit_codes_tensors(tf.constant(z), self.target_coordinates(tf.constant(y_target))).numpy()

    def manipulate(self, x, y_target, y=None, rule=None, batch_size=256):
        """Edits ``x`` to have labels ``y_target`` (``[n, k]`` or one row for all);
        returns ``E[x | z']`` ``[n, *data_shape]`` with ``z`` = mean of ``q(z|x)``.

        Rules:

        - ``"switched"`` (the default when the source labels ``y`` are given):
          the paper's ``z' = z − m_i^{y_i} + m_i^{y'_i}`` for every label with
          ``y'_i ≠ y_i``; the others are not touched.
        - ``"projection"`` (the default without ``y``): the coordinate of ``z``
          along every ``d̂_i`` is set to that of the target class mean (class
          docstring); needs no source labels.
        """
        rule = rule or ("projection" if y is None else "switched")
        if rule not in ("switched", "projection"):
            raise InputError(f"Unknown edit rule {rule!r}; use 'switched' or 'projection'.")
        if rule == "switched" and y is None:
            raise InputError("The 'switched' edit rule needs the source labels y (or use rule='projection').")
        x, y_target, y = self.check_edit_arrays(x, y_target, y)
        self._check_fitted(range(self.num_labels))
        if rule == "projection":
            return self.run_batched(self._edited, (x, y_target), batch_size)
        return self.run_batched(self._edited_switched, (x, y, y_target), batch_size)

    def edit_variants(self, x, label, n=5, y=None, spread=0.5, batch_size=256):
        """``n`` edits switching ``label`` on with different strengths.

        Variant ``s`` sets the coordinate along ``d̂_label`` to that of
        ``m^0 + s·d_label``, for ``s`` in ``1 + spread·linspace(−1, 1, n)``
        (``s = 1`` is ``manipulate``'s edit; ``n = 1`` gives only it). Other labels
        are left as they are. A VAE's only style control is this one direction.

        Returns ``[n, batch, *data_shape]``.
        """
        i = self.label_index(label)
        x = self.check_arrays(x)
        if y is not None:
            self.check_arrays(x, y)
        self._check_fitted([i])
        strengths = 1.0 + spread * np.linspace(-1.0, 1.0, n) if n > 1 else np.ones(1)
        _, coordinates = self.attribute_directions()
        z = self.encode(x, batch_size=batch_size)["z_mean"]
        variants = []
        for s in strengths:
            target = coordinates[0] + float(s) * (coordinates[1] - coordinates[0])
            targets = tf.tile(target[None, :], [len(z), 1])
            variants.append(self.decode(self.edit_codes_tensors(tf.constant(z), targets, labels=[i]).numpy(), batch_size=batch_size))
        return np.stack(variants)
