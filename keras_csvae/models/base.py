"""What all the models share: architecture config, input checks, seeded noise,
batched numpy editing calls, and the two-optimiser ``compile``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras


class InputError(ValueError):
    """Inputs that do not fit the model: shapes, label counts, values."""


ARCHITECTURE_DEFAULTS = {
    "architecture": None,  # "mlp" for vectors, "conv" for images
    "hidden_units": (64, 64),
    "conv_filters": (64, 128, 256),
    "dense_units": 2048,
    "decoder_filters": (256, 128, 32),
    "output_activation": None,  # "sigmoid" for images in [0, 1], else "linear"
}


class LatentModel(keras.Model):
    """Base class: a latent-variable model of ``x`` ``[batch, *data_shape]``
    with ``k = num_labels`` binary labels ``y`` ``[batch, k]``.

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
    """

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

    # -- configuration ---------------------------------------------------------
    def network_kwargs(self):
        """Keyword arguments for ``networks.gaussian_encoder`` / ``decoder``."""
        return dict(
            architecture=self.architecture,
            hidden_units=self.hidden_units,
            conv_filters=self.conv_filters,
            dense_units=self.dense_units,
        )

    def decoder_kwargs(self):
        return dict(
            architecture=self.architecture,
            hidden_units=self.hidden_units,
            decoder_filters=self.decoder_filters,
            output_activation=self.output_activation,
        )

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
        )
        return config

    # -- input checks ------------------------------------------------------------
    def check_static_shapes(self, x, y=None):
        """Trace-time check of ``x`` ``[batch, *data_shape]`` and ``y`` ``[batch, k]``."""
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

    def check_arrays(self, x=None, y=None):
        """Eager check of numpy inputs: shapes, finite values, labels in {0, 1}.

        Returns float32 arrays.
        """
        out = []
        if x is not None:
            x = np.asarray(x, dtype=np.float32)
            if x.shape[1:] != self.data_shape:
                raise InputError(
                    f"x has shape {x.shape}; this model expects [batch, {', '.join(map(str, self.data_shape))}]."
                )
            if not np.all(np.isfinite(x)):
                raise InputError("x contains NaN or infinite values.")
            out.append(x)
        if y is not None:
            y = np.asarray(y, dtype=np.float32)
            if y.ndim == 1 and self.num_labels > 1 and y.shape[0] == self.num_labels:
                y = y[None]
            if y.ndim == 1:
                y = y[:, None]
            if y.shape[-1] != self.num_labels:
                raise InputError(
                    f"y has {y.shape[-1]} label(s) per example; this model has {self.num_labels}: "
                    f"{', '.join(self.label_names)}."
                )
            if not np.all((y == 0) | (y == 1)):
                raise InputError("Labels must be 0 or 1; found other values in y.")
            out.append(y)
        if x is not None and y is not None and len(out[1]) not in (1, len(out[0])):
            raise InputError(f"{len(out[0])} examples in x but {len(out[1])} label rows in y.")
        if x is not None and y is not None and len(out[1]) == 1 and len(out[0]) > 1:
            out[1] = np.repeat(out[1], len(out[0]), axis=0)
        return out[0] if len(out) == 1 else tuple(out)

    def label_index(self, label):
        """Index of a label given by name or index."""
        if isinstance(label, str):
            if label not in self.label_names:
                raise InputError(f"Unknown label {label!r}; labels: {', '.join(self.label_names)}.")
            return self.label_names.index(label)
        label = int(label)
        if not 0 <= label < self.num_labels:
            raise InputError(f"Label index {label} out of range 0..{self.num_labels - 1}.")
        return label

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

    # -- numpy front end ---------------------------------------------------------------
    def run_batched(self, fn, arrays, batch_size=256):
        """Applies ``fn(*tensors) -> tensor or dict`` over ``arrays`` in batches; numpy out."""
        n = len(arrays[0])
        outputs = []
        for start in range(0, n, batch_size):
            chunk = [tf.convert_to_tensor(a[start : start + batch_size]) for a in arrays]
            outputs.append(keras.tree.map_structure(lambda t: np.asarray(t), fn(*chunk)))
        if not outputs:
            raise InputError("Empty input: nothing to compute.")
        return keras.tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)


class TwoOptimizerModel(LatentModel):
    """A model trained with two optimisers: the ELBO one for encoders and
    decoder, and one for an adversary (``compile(optimizer, adversary_optimizer)``).

    Subclasses define ``elbo_variables`` and ``adversary_variables``: the weights
    each optimiser may touch, taken from sub-models, never matched by name.
    """

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

    def get_compile_config(self):
        if not getattr(self, "compiled", False):
            return None

        def inner(opt):
            return opt.inner_optimizer if isinstance(opt, keras.optimizers.LossScaleOptimizer) else opt

        return {
            "optimizer": keras.optimizers.serialize(inner(self.optimizer)),
            "adversary_optimizer": keras.optimizers.serialize(inner(self.adversary_optimizer)),
            "jit_compile": bool(self.jit_compile),
        }

    def compile_from_config(self, config):
        self.compile(
            optimizer=keras.optimizers.deserialize(config["optimizer"]),
            adversary_optimizer=keras.optimizers.deserialize(config["adversary_optimizer"]),
            jit_compile=config.get("jit_compile", False),
        )

    def apply_gradients(self, optimizer, tape, loss, variables):
        """One optimiser step on ``variables`` only (loss-scaled if the optimiser is)."""
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
