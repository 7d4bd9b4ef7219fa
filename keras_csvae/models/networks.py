"""The networks every model here is made of: encoders, decoders, adversaries.

Two families, chosen by ``architecture``:

- ``"mlp"``: dense layers on flattened ``x`` (vectors such as the swiss roll).
- ``"conv"``: the paper's layout. Encoder: 5×5 convolutions, stride 2, with
  ``conv_filters`` (paper: 64/128/256), then a dense layer of ``dense_units``
  (paper: 2048). Decoder: dense to ``(H/2^n)·(W/2^n)·decoder_filters[0]``,
  5×5 transposed convolutions, stride 2, with ``decoder_filters`` (paper:
  256/128/32), and a final 5×5 convolution to ``C`` channels.

A label vector ``y`` (conditional encoders) is concatenated to the input of
the first dense layer. Layers that parameterise distributions run in float32
whatever the mixed-precision policy, because TFP cannot mix float16 with float32.
"""

from __future__ import annotations

import math

import keras
from keras import layers


def _dense_stack(units, name):
    return [layers.Dense(u, activation="relu", name=f"{name}_dense_{i}") for i, u in enumerate(units)]


def _check_conv_shape(data_shape, depth):
    h, w, _ = data_shape
    factor = 2**depth
    if h % factor or w % factor:
        raise ValueError(
            f"The conv architecture halves the image {depth} times, so height and width "
            f"must be multiples of {factor}; got {data_shape[:2]}."
        )


def gaussian_encoder(
    data_shape,
    latent_dim,
    *,
    architecture,
    hidden_units=(),
    conv_filters=(),
    dense_units=0,
    num_labels=0,
    log_var_init=0.0,
    name="encoder",
):
    """``q(· | x)`` or ``q(· | x, y)``: a diagonal Gaussian's mean and log-variance.

    Inputs ``x`` ``[batch, *data_shape]`` (and ``y`` ``[batch, num_labels]`` when
    ``num_labels > 0``); outputs ``mean, log_var``, each ``[batch, latent_dim]``,
    float32. The heads are linear: a ReLU there would force them to be ≥ 0.
    ``log_var_init`` is the log-variance head's initial bias: a negative value
    starts the posteriors narrower than the prior's unit variance.
    """
    x_in = keras.Input(shape=tuple(data_shape), name="x")
    inputs = [x_in]
    if architecture == "conv":
        _check_conv_shape(data_shape, len(conv_filters))
        h = x_in
        for i, filters in enumerate(conv_filters):
            h = layers.Conv2D(filters, 5, strides=2, padding="same", activation="relu", name=f"{name}_conv_{i}")(h)
        h = layers.Flatten(name=f"{name}_flatten")(h)
        units = [dense_units] if dense_units else []
    elif architecture == "mlp":
        h = layers.Flatten(name=f"{name}_flatten")(x_in)
        units = list(hidden_units)
    else:
        raise ValueError(f"Unknown architecture {architecture!r}; use 'mlp' or 'conv'.")
    if num_labels:
        y_in = keras.Input(shape=(num_labels,), name="y")
        inputs.append(y_in)
        h = layers.Concatenate(name=f"{name}_concat_y")([h, y_in])
    for layer in _dense_stack(units, name):
        h = layer(h)
    mean = layers.Dense(latent_dim, dtype="float32", name=f"{name}_mean")(h)
    log_var = layers.Dense(
        latent_dim,
        bias_initializer=keras.initializers.Constant(log_var_init),
        dtype="float32",
        name=f"{name}_log_var",
    )(h)
    return keras.Model(inputs if num_labels else x_in, [mean, log_var], name=name)


def decoder(
    data_shape,
    latent_dim,
    *,
    architecture,
    hidden_units=(),
    decoder_filters=(),
    output_activation="linear",
    name="decoder",
):
    """The mean of ``p(x | latent)``: ``[batch, latent_dim] → [batch, *data_shape]`` (float32)."""
    latent = keras.Input(shape=(latent_dim,), name="latent")
    if architecture == "conv":
        depth = len(decoder_filters)
        _check_conv_shape(data_shape, depth)
        h_size, w_size, channels = data_shape
        start = (h_size // 2**depth, w_size // 2**depth, decoder_filters[0])
        h = layers.Dense(math.prod(start), activation="relu", name=f"{name}_dense")(latent)
        h = layers.Reshape(start, name=f"{name}_reshape")(h)
        for i, filters in enumerate(decoder_filters):
            h = layers.Conv2DTranspose(
                filters, 5, strides=2, padding="same", activation="relu", name=f"{name}_deconv_{i}"
            )(h)
        x_mean = layers.Conv2D(
            channels, 5, padding="same", activation=output_activation, dtype="float32", name=f"{name}_x_mean"
        )(h)
    elif architecture == "mlp":
        h = latent
        for layer in _dense_stack(list(reversed(hidden_units)), name):
            h = layer(h)
        h = layers.Dense(math.prod(data_shape), activation=output_activation, dtype="float32", name=f"{name}_x_mean")(h)
        x_mean = layers.Reshape(tuple(data_shape), dtype="float32", name=f"{name}_reshape")(h)
    else:
        raise ValueError(f"Unknown architecture {architecture!r}; use 'mlp' or 'conv'.")
    return keras.Model(latent, x_mean, name=name)


def label_classifier(input_dim, num_labels, hidden_units=(64, 64), name="adversary"):
    """Bernoulli logits of ``q_δ(y | z)``: ``[batch, input_dim] → [batch, num_labels]`` (float32)."""
    z = keras.Input(shape=(input_dim,), name="z")
    h = z
    for layer in _dense_stack(hidden_units, name):
        h = layer(h)
    logits = layers.Dense(num_labels, dtype="float32", name=f"{name}_logits")(h)
    return keras.Model(z, logits, name=name)
