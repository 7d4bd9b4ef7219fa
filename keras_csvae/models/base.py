"""The Keras side all the models share: hyperparameters and their config,
the networks' architecture, trace-time shape checks, seeded noise, and the
training step with one or two optimisers (its ``tf.distribute`` workarounds
and the fused optimiser update). The numpy front end is ``numpy_api``.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from keras_csvae import losses
from keras_csvae.models import networks
from keras_csvae.models.numpy_api import InputError, NumpyAPI
from serving.runtime.contract import check_edit_strength, edit_strength_json

ARCHITECTURE_DEFAULTS = {
    "architecture": None,  # "mlp" for vectors, "conv" for images
    "hidden_units": (64, 64),
    "conv_filters": (64, 128, 256),
    "dense_units": 2048,
    "decoder_filters": (256, 128, 32),
    "output_activation": None,  # "sigmoid" for images in [0, 1], else "linear"
}


def gaussian_sample(mean, log_var, seed):
    """A reparameterised sample of ``N(mean, diag(exp(log_var)))``, same shape as ``mean``.

    ``seed`` is a stateless ``[2]`` int32 seed (``LatentModel.step_seed``).
    """
    noise = tf.random.stateless_normal(tf.shape(mean), seed, dtype=mean.dtype)
    return mean + tf.exp(0.5 * log_var) * noise


def _without_loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


class LatentModel(NumpyAPI, keras.Model):
    """Base class: a latent-variable model of ``x`` ``[batch, *data_shape]``
    with ``k = num_labels`` binary labels ``y`` ``[batch, k]``.

    Every model takes the CSVAE's hyperparameters, so that one ``model_kwargs``
    builds all four and a comparison is fair (a model keeps in its config those
    it does not use).

    Args:
      data_shape: shape of one ``x``; 3-D means an image ``(H, W, C)``.
      num_labels: ``k``.
      label_names: optional names of the ``k`` labels (``glasses``, ...).
      architecture: ``"mlp"`` or ``"conv"``; default ``"conv"`` for images.
      hidden_units: MLP widths (encoder order; the decoder mirrors them).
      conv_filters, dense_units, decoder_filters: conv family widths.
      output_activation: of the decoder mean; default ``"sigmoid"`` for images.
      decoder_scale: standard deviation of the Gaussian ``p(x | ·)``.
      seed: base seed of all the model's noise.
      z_dim: size of the CSVAE's ``z``.
      w_dim: size of each label's subspace ``W_i`` of the CSVAE (2 so it can be
        plotted); the baselines' single latent has ``z_dim + k * w_dim``.
      adversary_units: hidden widths of an adversary ``q_δ(y | ·)``.
      prior: the CSVAE's ``p(w | y)``: ``WPrior`` or its dict (``mean_absent,
        scale_absent, mean_present, scale_present``); default convention "B".
      betas: ``[β1, …, β5]``, the weights of the objective's terms; default
        ``[20, 1, 0.2, 10, 1]``.
      log_var_init: initial bias of the encoders' log-variance heads (0: the
        posteriors start at unit variance).
      edit_strength: how far the CSVAE's edits move a label switched on:
        ``W_i`` goes to ``mean_absent + edit_strength · (mean_present −
        mean_absent)`` (``WPrior.edit_targets``); 1, the default, is the mean
        of ``p(w_i | y_i = 1)`` (the paper's rule). Larger values draw the
        attribute more strongly (RESULTS.md). A number for every label, or a
        list with one per label (attributes the decoder draws faintly need a
        longer move). Read when an edit runs or an export is traced, so it
        can be changed on a trained model.
      edit_locality: weight ``λ`` of the CSVAE's edit-locality penalty, not
        in the paper (0, the default, is the paper's objective): for a
        quarter of each batch, one label ``i`` per example is flipped, ``w_i``
        drawn from ``p(w_i | 1 − y_i)``, and ``λ`` times the mean of
        ``‖x̂_edited − x̂‖₁`` is added to the loss, so that moving in ``W_i``
        changes only what label ``i`` draws (RESULTS.md). Used by the CSVAE.
      edit_locality_saturation: ``c`` of ``losses.edit_change``: 0 (default)
        penalises the L1 norm; ``c > 0`` the saturating ``c·log(1 + |d|/c)``,
        which leaves changes much larger than ``c`` nearly free.

    Subclasses set ``metric_names`` (the ``[batch]`` terms reported while
    training) and ``optimizer_names`` (the attributes holding their optimisers).
    """

    metric_names: tuple[str, ...] = ()
    optimizer_names: tuple[str, ...] = ("optimizer",)

    def __init__(
        self,
        data_shape,
        num_labels,
        label_names=None,
        architecture=None,
        hidden_units=ARCHITECTURE_DEFAULTS["hidden_units"],
        conv_filters=ARCHITECTURE_DEFAULTS["conv_filters"],
        dense_units=ARCHITECTURE_DEFAULTS["dense_units"],
        decoder_filters=ARCHITECTURE_DEFAULTS["decoder_filters"],
        output_activation=None,
        decoder_scale=1.0,
        seed=0,
        z_dim=8,
        w_dim=2,
        adversary_units=(64, 64),
        prior=None,
        betas=None,
        log_var_init=0.0,
        edit_strength=1.0,
        edit_locality=0.0,
        edit_locality_saturation=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.num_labels = int(num_labels)
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be ≥ 1, got {num_labels}.")
        self.label_names = tuple(label_names) if label_names else tuple(f"label_{i}" for i in range(self.num_labels))
        if len(self.label_names) != self.num_labels:
            raise ValueError(f"{len(self.label_names)} label_names for {self.num_labels} labels.")
        is_image = len(self.data_shape) == 3
        self.architecture = architecture or ("conv" if is_image else "mlp")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.conv_filters = tuple(int(f) for f in conv_filters)
        self.dense_units = int(dense_units)
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        self.output_activation = output_activation or ("sigmoid" if is_image else "linear")
        self.decoder_scale = float(decoder_scale)
        self.seed = int(seed)
        self.z_dim = int(z_dim)
        self.w_dim = int(w_dim)
        self.adversary_units = tuple(int(u) for u in adversary_units)
        self.prior = losses.as_w_prior(prior)
        self.betas = losses.as_betas(betas)
        self.log_var_init = float(log_var_init)
        self.edit_strength = edit_strength
        self.edit_locality = float(edit_locality)
        if not self.edit_locality >= 0:
            raise ValueError(f"edit_locality must be ≥ 0, got {edit_locality}.")
        self.edit_locality_saturation = float(edit_locality_saturation)
        if not self.edit_locality_saturation >= 0:
            raise ValueError(f"edit_locality_saturation must be ≥ 0, got {edit_locality_saturation}.")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    # -- configuration ---------------------------------------------------------
    def encoder_network(self, latent_dim, name, num_labels=0):
        """``networks.gaussian_encoder`` of ``x`` (and ``num_labels`` labels) in this model's architecture."""
        return networks.gaussian_encoder(
            self.data_shape,
            latent_dim,
            architecture=self.architecture,
            hidden_units=self.hidden_units,
            conv_filters=self.conv_filters,
            dense_units=self.dense_units,
            num_labels=num_labels,
            log_var_init=self.log_var_init,
            name=name,
        )

    def decoder_network(self, latent_dim, name="decoder"):
        """``networks.decoder`` from ``latent_dim`` inputs in this model's architecture."""
        return networks.decoder(
            self.data_shape,
            latent_dim,
            architecture=self.architecture,
            hidden_units=self.hidden_units,
            decoder_filters=self.decoder_filters,
            output_activation=self.output_activation,
            name=name,
        )

    def adversary_network(self, input_dim):
        """``networks.label_classifier`` ``q_δ(y | ·)`` of ``input_dim`` codes, ``adversary_units`` wide."""
        return networks.label_classifier(input_dim, self.num_labels, self.adversary_units, name="adversary")

    def get_config(self):
        config = super().get_config()
        config.update(
            data_shape=list(self.data_shape),
            num_labels=self.num_labels,
            label_names=list(self.label_names),
            architecture=self.architecture,
            hidden_units=list(self.hidden_units),
            conv_filters=list(self.conv_filters),
            dense_units=self.dense_units,
            decoder_filters=list(self.decoder_filters),
            output_activation=self.output_activation,
            decoder_scale=self.decoder_scale,
            seed=self.seed,
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            adversary_units=list(self.adversary_units),
            prior=dataclasses.asdict(self.prior),
            betas=self.betas.as_list(),
            log_var_init=self.log_var_init,
            edit_strength=edit_strength_json(self.edit_strength),
            edit_locality=self.edit_locality,
            edit_locality_saturation=self.edit_locality_saturation,
        )
        return config

    @property
    def edit_strength(self):
        """See the class docstring: a float > 0, or a tuple of them, one per label."""
        return self._edit_strength

    @edit_strength.setter
    def edit_strength(self, value):
        self._edit_strength = check_edit_strength(value, self.num_labels)

    # -- input checks ------------------------------------------------------------
    def check_static_shapes(self, x, y=None):
        """Trace-time check of ``x`` ``[batch, *data_shape]`` and ``y`` ``[batch, k]``."""
        if x.shape.rank is None or (y is not None and y.shape.rank is None):
            return  # Keras retraces with unknown shapes; TF checks them at run time
        x_shape = tuple(x.shape[1:])
        if x_shape != self.data_shape:
            raise InputError(
                f"x has shape {tuple(x.shape)}; this model expects [batch, {', '.join(map(str, self.data_shape))}]."
            )
        if y is not None:
            if len(y.shape) != 2 or y.shape[-1] != self.num_labels:
                raise InputError(
                    f"y has shape {tuple(y.shape)}; this model expects [batch, {self.num_labels}] "
                    f"(labels {', '.join(self.label_names)})."
                )

    # -- noise -------------------------------------------------------------------
    def step_seed(self, salt):
        """A stateless seed ``[2]`` int32 that differs per step, call site and replica.

        Derived from the ELBO optimiser's step counter, so a resumed run draws the
        same noise as an uninterrupted one. The replica id is folded in because
        every replica would otherwise draw identical noise.
        """
        step = self.optimizer.iterations if self.optimizer is not None else tf.constant(0, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int32), tf.cast(step, tf.int32)])
        seed = tf.random.experimental.stateless_fold_in(seed, salt)
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(replica.replica_id_in_sync_group, tf.int32))
        return seed

    @staticmethod
    def fixed_seed(seed):
        return tf.constant([int(seed) % (2**31 - 1), 0], tf.int32)

    # -- distribution --------------------------------------------------------------
    @staticmethod
    def replica_mean(per_example):
        """Mean over the local batch, divided by the replica count, so that the
        sum of gradients over replicas is the gradient of the global-batch mean."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.reduce_mean(per_example) / tf.cast(replicas, per_example.dtype)

    # -- metrics -----------------------------------------------------------------------
    def update_trackers(self, terms):
        """Updates ``self.trackers`` (``{name: keras.metrics.Mean}``) from the
        ``[batch]`` tensors in ``terms``; returns the logs of the step."""
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces step logs with reduce(MEAN, axis=0) under this
            # strategy, which rejects scalars: give it a length-1 axis.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    @property
    def metrics(self):
        trackers = getattr(self, "trackers", None)
        return list(trackers.values()) if trackers else super().metrics

    # -- training helpers ------------------------------------------------------------
    def get_compile_config(self):
        """The optimisers (``optimizer_names``, without loss scaling: ``compile``
        adds it back under mixed precision) and compile flags, for ``.keras`` files."""
        if not getattr(self, "compiled", False):
            return None
        optimizers = {name: _without_loss_scale(getattr(self, name)) for name in self.optimizer_names}
        config = {name: keras.optimizers.serialize(optimizer) for name, optimizer in optimizers.items()}
        return dict(config, jit_compile=bool(self.jit_compile), steps_per_execution=int(self.steps_per_execution))

    def compile_from_config(self, config):
        self.compile(
            **{name: keras.optimizers.deserialize(config[name]) for name in self.optimizer_names},
            jit_compile=config.get("jit_compile", False),
            steps_per_execution=config.get("steps_per_execution", 1),
        )

    def compile(self, *args, **kwargs):
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras's multi-step train loop fails to run under this strategy
            # ("Detected at node while/cond/Placeholder"): one step per call.
            kwargs["steps_per_execution"] = 1
        super().compile(*args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3's fit reduces a sample batch across replicas here, which
        # fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        # Nothing needs building: weights, optimisers and the metric trackers
        # all exist once __init__ and compile have run.
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def apply_gradients(self, optimizer, tape, loss, variables):
        """One optimiser step on ``variables`` only (loss-scaled if the optimiser is).

        Unless the whole step is XLA-compiled already or runs under a
        ``tf.distribute`` strategy, the update runs as one XLA cluster: Keras's
        Adam is about a dozen element-wise passes over every weight, which XLA
        fuses into one (the 64×64 paper model's update 3.4× faster, its step
        1.1× in float32 and 1.3× in bfloat16 on CPU; BENCHMARKS.md). Under a
        strategy the update all-reduces the gradients across replicas, which
        cannot happen inside a cluster.
        """
        grads = tape.gradient(loss, variables)
        if self.jit_compile or tf.distribute.has_strategy():
            optimizer.apply(grads, variables)
        else:
            self._fused_update(optimizer, variables)(grads)

    def _fused_update(self, optimizer, variables):
        # Cached outside Keras's attribute tracking: one tf.function per
        # (optimiser, variable list), traced once inside the train function.
        cache = self.__dict__.setdefault("_fused_updates", {})
        key = (id(optimizer), tuple(id(v) for v in variables))
        if key not in cache:
            cache[key] = tf.function(lambda grads: optimizer.apply(grads, variables), jit_compile=True, autograph=False)
        return cache[key]

    # -- export ----------------------------------------------------------------------
    def serving_functions(self):
        """The functions exported to SavedModel and ONNX.

        Returns ``{name: (fn, input_specs)}``: ``fn`` takes float32 tensors in
        the order of ``input_specs`` (``tf.TensorSpec`` with batch dim ``None``
        and a name) and returns a dict of float32 tensors whose names differ
        from the inputs'. They are plain TensorFlow on distribution parameters,
        without TFP or random ops (tf2onnx cannot convert those): noise, where
        wanted, is an input. Must include ``manipulate``.
        """
        raise NotImplementedError

    def x_spec(self, name="x"):
        return tf.TensorSpec([None, *self.data_shape], tf.float32, name=name)

    def y_spec(self, name="y"):
        return tf.TensorSpec([None, self.num_labels], tf.float32, name=name)


class TwoOptimizerModel(LatentModel):
    """A model trained with two optimisers: the ELBO one for encoders and
    decoder, and one for an adversary (``compile(optimizer, adversary_optimizer)``).

    Subclasses define ``elbo_variables`` and ``adversary_variables``: the weights
    each optimiser may touch, taken from sub-models, never matched by name.
    """

    optimizer_names = ("optimizer", "adversary_optimizer")

    def compile(self, optimizer="adam", adversary_optimizer="adam", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        adversary_optimizer = keras.optimizers.get(adversary_optimizer)
        if self.dtype_policy.name == "mixed_float16" and not isinstance(
            adversary_optimizer, keras.optimizers.LossScaleOptimizer
        ):
            # Keras wraps only the optimiser given to super().compile.
            adversary_optimizer = keras.optimizers.LossScaleOptimizer(adversary_optimizer)
        self.adversary_optimizer = adversary_optimizer
        # Built now, under the strategy scope: an unbuilt second optimiser
        # breaks fit with more than one replica.
        self.optimizer.build(self.elbo_variables)
        self.adversary_optimizer.build(self.adversary_variables)

    # -- training (the CSVAE's step, shared) --------------------------------------------------
    def train_step(self, data):
        """One step of each optimiser on a batch ``(x, y)``.

        Subclasses define ``loss_terms(x, y, seed, training) -> (terms, codes, y)``
        (``terms["loss"]`` ``[batch]`` is what the encoders and decoder minimise;
        ``codes`` is passed on unchanged) and ``adversary_loss(codes, y,
        training) -> [batch]``, which must hold the codes fixed (stop-gradient).
        """
        x, y = data[:2]
        with tf.GradientTape() as tape:
            terms, codes, y = self.loss_terms(x, y, self.step_seed(0), training=True)
            scaled = self.optimizer.scale_loss(self.replica_mean(terms["loss"]))
        self.apply_gradients(self.optimizer, tape, scaled, self.elbo_variables)

        with tf.GradientTape() as tape:
            terms["adversary_loss"] = self.adversary_loss(codes, y, training=True)
            scaled = self.adversary_optimizer.scale_loss(self.replica_mean(terms["adversary_loss"]))
        self.apply_gradients(self.adversary_optimizer, tape, scaled, self.adversary_variables)
        return self.update_trackers(terms)

    def test_step(self, data):
        x, y = data[:2]
        terms, codes, y = self.loss_terms(x, y, self.fixed_seed(self.seed), training=False)
        terms["adversary_loss"] = self.adversary_loss(codes, y, training=False)
        return self.update_trackers(terms)


class OneOptimizerModel(LatentModel):
    """A model trained by one optimiser on all its trainable weights.

    ``compile(optimizer, adversary_optimizer=None)`` accepts and ignores an
    adversary optimiser, so every model is compiled the same way
    (``training.train.compile_model``).

    Subclasses define ``loss_terms(x, y, seed, training) -> (terms, codes, y)``
    (``terms["loss"]`` ``[batch]`` is minimised) and may override
    ``observe_training_batch(codes, y)``, which runs after each optimiser step
    (running statistics of the codes, for instance).
    """

    def compile(self, optimizer="adam", adversary_optimizer=None, **kwargs):
        del adversary_optimizer  # no adversary: accepted for a uniform compile call
        super().compile(optimizer=optimizer, **kwargs)
        # Built now, under the strategy scope, like TwoOptimizerModel's.
        self.optimizer.build(self.elbo_variables)

    @property
    def elbo_variables(self):
        return self.trainable_weights

    def observe_training_batch(self, codes, y):
        """Hook run after each optimiser step with ``loss_terms``' codes and labels."""

    def train_step(self, data):
        x, y = data[:2]
        with tf.GradientTape() as tape:
            terms, codes, y = self.loss_terms(x, y, self.step_seed(0), training=True)
            scaled = self.optimizer.scale_loss(self.replica_mean(terms["loss"]))
        self.apply_gradients(self.optimizer, tape, scaled, self.elbo_variables)
        self.observe_training_batch(codes, y)
        return self.update_trackers(terms)

    def test_step(self, data):
        x, y = data[:2]
        terms, _, _ = self.loss_terms(x, y, self.fixed_seed(self.seed), training=False)
        return self.update_trackers(terms)
