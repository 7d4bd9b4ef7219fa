"""``export.subpixel``: strided Conv2DTranspose as Conv + depth_to_space, and
DepthToSpace folded behind a narrow Conv, equal to the Keras layers / the
original graph; an ONNX export using both still matches the SavedModel."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from helpers import tiny_csvae
from onnx import helper, numpy_helper

from export import onnx_export, savedmodel, subpixel, verify
from export.signatures import model_functions

TOLERANCE = 1e-5


@pytest.mark.parametrize(
    "kernel, strides, size, c_in, filters, activation",
    [
        (5, 2, (8, 8), 16, 8, "relu"),  # the decoder's layers
        (5, 2, (1, 1), 3, 4, "relu"),
        (5, 2, (3, 6), 5, 7, "sigmoid"),
        (3, 2, (4, 5), 2, 3, None),
        (4, 2, (5, 4), 3, 2, "tanh"),  # even kernel: asymmetric padding
        (2, 2, (3, 3), 4, 4, "relu"),
        (1, 2, (3, 2), 2, 5, None),  # kernel < stride
        ((5, 3), 2, (4, 4), 3, 6, "relu"),
        (5, 3, (3, 4), 4, 2, "softmax"),  # channel-wise activation: after depth_to_space
        (6, 3, (2, 3), 2, 3, "relu"),
    ],
)
def test_subpixel_call_equals_the_keras_layer(kernel, strides, size, c_in, filters, activation):
    rng = np.random.default_rng(0)
    layer = keras.layers.Conv2DTranspose(filters, kernel, strides=strides, padding="same", activation=activation)
    x = rng.standard_normal((3, *size, c_in)).astype(np.float32)
    layer.build(x.shape)
    layer.bias.assign(rng.standard_normal(filters).astype(np.float32))
    assert subpixel.eligible(layer)
    expected = np.asarray(layer(x))
    actual = np.asarray(tf.function(lambda v: subpixel.subpixel_call(layer, v))(tf.constant(x)))
    assert actual.shape == expected.shape == (3, size[0] * strides, size[1] * strides, filters)
    np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(strides=1),
        dict(strides=2, padding="valid"),
        dict(strides=(2, 1)),
        dict(strides=2, output_padding=1),
        dict(strides=2, use_bias=False),
    ],
)
def test_context_rewrites_eligible_layers_and_falls_back_otherwise(kwargs):
    rng = np.random.default_rng(1)
    inputs = keras.Input((6, 5, 3))
    layer = keras.layers.Conv2DTranspose(4, 5, activation="relu", **{"padding": "same", **kwargs})
    model = keras.Model(inputs, layer(inputs))
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    expected = np.asarray(model(x))
    original = keras.layers.Conv2DTranspose.call
    with subpixel.subpixel_conv_transpose():
        fn = tf.function(model).get_concrete_function(tf.TensorSpec([None, 6, 5, 3], tf.float32))
        actual = np.asarray(fn(tf.constant(x)))
    assert keras.layers.Conv2DTranspose.call is original
    ops = {op.type for op in fn.graph.get_operations()}
    rewritten = subpixel.eligible(layer)
    assert rewritten == ("DepthToSpace" in ops) == ("Conv2DBackpropInput" not in ops)
    assert rewritten == (kwargs.get("strides") == 2 and "padding" not in kwargs and "output_padding" not in kwargs)
    np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)


def _d2s_conv_graph(c_in, s, c_out, kernel, pads, activation, bias):
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((c_out, c_in, *kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W")]
    conv_inputs = ["up", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "B"))
        conv_inputs.append("B")
    nodes = [
        helper.make_node("DepthToSpace", ["v"], ["up"], blocksize=s),
        helper.make_node("Conv", conv_inputs, ["conv"], kernel_shape=list(kernel), pads=list(pads)),
    ]
    out = "conv"
    if activation:
        nodes.append(helper.make_node(activation, ["conv"], ["act"]))
        out = "act"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("v", onnx.TensorProto.FLOAT, ["n", c_in * s * s, None, None])],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["n", c_out, None, None])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "c_in, s, c_out, kernel, pads, activation, bias",
    [
        (16, 2, 3, (5, 5), (2, 2, 2, 2), "Sigmoid", True),  # the decoder's final Conv
        (4, 2, 1, (3, 3), (1, 1, 1, 1), None, False),
        (3, 2, 2, (4, 2), (1, 0, 2, 1), "Relu", True),
        (2, 3, 3, (5, 3), (2, 1, 2, 1), "Tanh", True),
    ],
)
def test_fold_depth_to_space_keeps_the_onnx_function(c_in, s, c_out, kernel, pads, activation, bias):
    model = _d2s_conv_graph(c_in, s, c_out, kernel, pads, activation, bias)
    v = np.random.default_rng(3).standard_normal((2, c_in * s * s, 5, 4)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"v": v})[
        0
    ]
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    assert subpixel.fold_depth_to_space(folded) == 1
    onnx.checker.check_model(folded, full_check=True)
    ops = [n.op_type for n in folded.graph.node]
    assert ops == ["Conv", *([activation] if activation else []), "DepthToSpace"]
    actual = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"v": v})[0]
    np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)


def test_fold_leaves_wide_and_strided_convs_alone():
    wide = _d2s_conv_graph(4, 2, subpixel.FOLD_MAX_OUT_CHANNELS + 1, (3, 3), (1, 1, 1, 1), None, True)
    not_same = _d2s_conv_graph(4, 2, 2, (3, 3), (0, 0, 0, 0), None, True)
    for model in (wide, not_same):
        assert subpixel.fold_depth_to_space(model) == 0
        assert [n.op_type for n in model.graph.node] == ["DepthToSpace", "Conv"]


def test_onnx_export_uses_the_rewrite_and_matches_the_savedmodel(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_csvae(data_shape=(16, 16, 3), num_labels=2)
    # Non-zero biases, so that their placement is checked too (tf2onnx drops zero ones).
    rng = np.random.default_rng(4)
    for layer in model.decoder.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    function = model_functions(model)["manipulate"]
    savedmodel.write_savedmodel(model, {"manipulate": function}, tmp_path / "savedmodel" / "1")
    converted = onnx_export.convert(function, tmp_path / "manipulate.onnx", {})
    plain = onnx_export.convert(function, tmp_path / "plain.onnx", {}, subpixel=False)
    ops = [n.op_type for n in converted.graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 3
    assert "ConvTranspose" in [n.op_type for n in plain.graph.node]
    signature = tf.saved_model.load(str(tmp_path / "savedmodel" / "1")).signatures["manipulate"]
    session = verify.onnx_session(tmp_path / "manipulate.onnx")
    for batch in (1, 7):
        feeds = {spec.name: verify.random_input(model, spec, batch, rng) for spec in function.input_specs}
        expected = signature(**{k: tf.constant(v) for k, v in feeds.items()})["x_edited"].numpy()
        actual = session.run(None, feeds)[0]
        assert verify.scaled_error(actual, expected) <= TOLERANCE
