"""Strided ``Conv2DTranspose`` as a sub-pixel convolution, for the ONNX export.

onnxruntime's CPU ``ConvTranspose`` is slow (a GEMM then a col2im scatter),
while its ``Conv`` runs on the fast NCHWc kernels. A transposed convolution
with stride ``s`` (both axes) and ``"same"`` padding is exactly an ordinary
stride-1 convolution producing ``s²·filters`` channels, one group per output
phase, followed by ``depth_to_space(·, s)`` ("sub-pixel convolution"). tf2onnx
turns that into ``Conv`` + ``DepthToSpace``.

The maths, per spatial axis (the two axes are independent). Keras (the TF
backend: ``tf.nn.conv2d_transpose``) with kernel size ``k``, stride ``s`` and
``"same"`` padding maps ``n`` inputs to ``s·n`` outputs as the adjoint of a
stride-``s`` "SAME" convolution of ``s·n`` inputs, which pads ``p = max(k - s,
0) // 2`` in front::

    out[j] = Σ_{i, t : s·i + t - p = j} in[i] · K[t]          (0 ≤ t < k)

Write ``j = s·m + r`` (``0 ≤ r < s``, the phase) and ``i = m + d``; then
``t = r + p - s·d``, so::

    out[s·m + r] = Σ_d in[m + d] · K[r + p - s·d]     (terms with t outside [0, k) are 0)

For every phase that is a stride-1 correlation of ``in`` with a small kernel
over offsets ``d ∈ [d_min, d_max]``, with ``d_min = min_r ceil((r + p - k +
1) / s)``, ``d_max = max_r floor((r + p) / s)``: a kernel of size ``d_max -
d_min + 1`` (3 for ``k = 5, s = 2``), zero padding ``-d_min`` in front and
``d_max`` behind (1 and 1, i.e. "SAME", for ``k = 5, s = 2``).

Shapes (NHWC): ``x [b, h, w, c_in]``; Keras kernel ``K [kh, kw, filters,
c_in]``; sub-pixel kernel ``[kh', kw', c_in, s·s·filters]`` whose output
channel ``(r_h·s + r_w)·filters + f`` holds phase ``(r_h, r_w)`` of filter
``f``: the channel order of ``tf.nn.depth_to_space`` (and of ONNX
``DepthToSpace`` in its default DCR mode), which puts it at pixel ``(s·m + r_h,
s·q + r_w)``. Then bias and activation, as the layer does. The result is
``[b, s·h, s·w, filters]``, equal to the layer's up to float rounding (the
sums run in another order): ≤ 1e-6 on unit-scale inputs.

The kernel is rearranged with TF ops on the layer's variable inside the traced
function, so tf2onnx folds it to a constant initializer (no extra run-time
work) and the conversion always reads the current weights.

``subpixel_conv_transpose()`` is a context manager for the ONNX conversion
only: inside it, every eligible ``keras.layers.Conv2DTranspose`` (2-D, equal
strides ≥ 2, ``"same"`` padding, no ``output_padding``, no dilation,
``channels_last``) computes this way; any other layer keeps its own ``call``.
The SavedModel keeps the Keras layers.

``fold_depth_to_space(onnx_model)`` then moves a ``DepthToSpace`` past a
following narrow stride-1 ``Conv`` (the decoder's final RGB convolution):
``Conv(depth_to_space(v)) = depth_to_space(Conv'(v))`` with a "polyphase"
kernel ``W'`` (``polyphase_conv_weights``), by the same index algebra:
the Conv's output pixel ``s·m + r`` (phase ``r``) reads, through tap ``t``,
upsampled pixel ``s·m + r + t - pad = s·(m + d) + q``, i.e. phase ``q = (r + t
- pad) mod s`` of pixel ``m + d``, ``d = floor((r + t - pad) / s)``.
"""

from __future__ import annotations

import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf

_LOCK = threading.RLock()


def _axis_plan(k: int, s: int):
    """Per axis: (kernel size of the sub-pixel conv, pad before, pad after,
    [(phase r, index into the sub-pixel kernel a, index into K t)] for every non-zero tap)."""
    p = max(k - s, 0) // 2
    taps = []
    for r in range(s):
        for t in range(k):
            # t = r + p - s·d  ⇔  d = (r + p - t) / s, integral taps only
            if (r + p - t) % s == 0:
                taps.append((r, (r + p - t) // s, t))
    d_min = min(d for _, d, _ in taps)
    d_max = max(d for _, d, _ in taps)
    return d_max - d_min + 1, -d_min, d_max, [(r, d - d_min, t) for r, d, t in taps]


def subpixel_kernel_indices(kernel_size, strides):
    """Gather indices mapping the Keras kernel to the sub-pixel kernel.

    Returns ``(shape, pads, index)``: the sub-pixel kernel is ``[kh', kw',
    c_in, s·s·filters]``; ``pads = ((top, bottom), (left, right))``; ``index``
    is an int array ``[kh', kw', s·s]`` of flat indices into ``K`` reshaped to
    ``[kh·kw + 1, filters, c_in]`` (index ``kh·kw`` is an all-zero row), so
    that ``gather(K_flat, index)`` gives ``[kh', kw', s·s, filters, c_in]``.
    """
    (kh, kw), (s, s_w) = kernel_size, strides
    assert s == s_w
    size_h, top, bottom, taps_h = _axis_plan(kh, s)
    size_w, left, right, taps_w = _axis_plan(kw, s)
    zero = kh * kw
    index = np.full([size_h, size_w, s * s], zero, np.int32)
    for r_h, a_h, t_h in taps_h:
        for r_w, a_w, t_w in taps_w:
            index[a_h, a_w, r_h * s + r_w] = t_h * kw + t_w
    return (size_h, size_w), ((top, bottom), (left, right)), index


# Keras activations that act on each element alone (softmax and its kin do not).
ELEMENTWISE_ACTIVATIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "gelu",
        "silu",
        "swish",
        "mish",
        "sigmoid",
        "hard_sigmoid",
        "hard_silu",
        "hard_swish",
        "tanh",
        "softplus",
        "softsign",
        "exponential",
    }
)


def _is_elementwise(activation) -> bool:
    try:
        name = keras.activations.serialize(activation)
    except Exception:  # a custom callable
        return False
    return isinstance(name, str) and name in ELEMENTWISE_ACTIVATIONS


def eligible(layer) -> bool:
    """Whether ``layer`` is a Conv2DTranspose that ``subpixel_call`` reproduces exactly."""
    strides = tuple(layer.strides)
    return (
        isinstance(layer, keras.layers.Conv2DTranspose)
        and len(strides) == 2
        and strides[0] == strides[1] >= 2
        and layer.padding == "same"
        and layer.output_padding is None
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
    )


def subpixel_call(layer, inputs):
    """``layer(inputs)`` computed as Conv2D (stride 1) + ``depth_to_space``; ``layer`` must be ``eligible``."""
    s = layer.strides[0]
    (size_h, size_w), pads, index = subpixel_kernel_indices(tuple(layer.kernel_size), tuple(layer.strides))
    kernel = tf.convert_to_tensor(layer.kernel)  # [kh, kw, filters, c_in]
    kh, kw, filters, c_in = kernel.shape
    dtype = inputs.dtype
    flat = tf.reshape(tf.cast(kernel, dtype), [kh * kw, filters, c_in])
    flat = tf.concat([flat, tf.zeros([1, filters, c_in], dtype)], axis=0)
    sub = tf.gather(flat, index)  # [kh', kw', s·s, filters, c_in]
    sub = tf.transpose(sub, [0, 1, 4, 2, 3])  # [kh', kw', c_in, s·s, filters]
    sub = tf.reshape(sub, [size_h, size_w, c_in, s * s * filters])
    if pads == ((size_h // 2, size_h // 2), (size_w // 2, size_w // 2)) and size_h % 2 and size_w % 2:
        padding = "SAME"  # the usual case (k = 5, s = 2: 3×3, pad 1): the plainest graph
    else:
        padding = [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]
    outputs = tf.nn.conv2d(inputs, sub, strides=1, padding=padding)
    if layer.use_bias:
        bias = tf.tile(tf.cast(tf.convert_to_tensor(layer.bias), dtype), [s * s])  # phase-major, like the channels
        outputs = tf.nn.bias_add(outputs, bias)
    # Bias and an elementwise activation commute with depth_to_space (a
    # permutation of the elements); applied before it, onnxruntime fuses them
    # into the Conv.
    elementwise = _is_elementwise(layer.activation)
    if elementwise:
        outputs = layer.activation(outputs)
    outputs = tf.nn.depth_to_space(outputs, s)
    if not elementwise and layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


@contextlib.contextmanager
def subpixel_conv_transpose():
    """Inside: eligible ``keras.layers.Conv2DTranspose`` layers compute as sub-pixel convolutions.

    Patches ``Conv2DTranspose.call`` (the class, so that the functional
    models' calls see it) while the context is open: in every thread, so
    convert one function at a time (nested or concurrent uses are serialised).
    """
    cls = keras.layers.Conv2DTranspose
    with _LOCK:
        had_own = "call" in cls.__dict__
        original_attr = cls.__dict__.get("call")
        original = cls.call

        def call(self, inputs):
            if type(self) is cls and eligible(self):
                return subpixel_call(self, inputs)
            return original(self, inputs)

        cls.call = call
        try:
            yield
        finally:
            if had_own:
                cls.call = original_attr
            else:
                del cls.call


# -- ONNX: DepthToSpace → Conv  ⇒  Conv → DepthToSpace ---------------------------------------------
# ONNX activations that act on each element alone: moved in front of the DepthToSpace with their Conv.
_ONNX_ELEMENTWISE = frozenset(
    {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Elu", "Selu", "Softplus", "Clip"}
)
# Fold only Convs with few output channels (the decoder's final RGB Conv):
# onnxruntime's NCHWc Conv computes output channels in blocks of 8 or 16, so a
# 3-channel Conv wastes most of its work; the folded Conv has s²× the output
# channels (12 for RGB, s = 2) on 1/s² of the pixels, for 1.44× the
# multiply-adds (5×5 → 3×3 over s² phases). On wide Convs that 1.44× is pure loss.
FOLD_MAX_OUT_CHANNELS = 4


def _polyphase_axis(k: int, pad: int, s: int):
    """Per axis of a stride-1 Conv (kernel ``k``, ``pad`` in front) applied to
    ``depth_to_space(·, s)``: (kernel size, pad before, pad after, [(out phase r,
    in phase q, tap a of the new kernel, tap t of the old)])."""
    taps = [(r, (r + t - pad) % s, (r + t - pad) // s, t) for r in range(s) for t in range(k)]
    d_min = min(d for _, _, d, _ in taps)
    d_max = max(d for _, _, d, _ in taps)
    return d_max - d_min + 1, -d_min, d_max, [(r, q, d - d_min, t) for r, q, d, t in taps]


def polyphase_conv_weights(weight: np.ndarray, bias, pads, s: int):
    """``Conv(W, B, pads)`` of ``DepthToSpace(v, s)`` (DCR) equals
    ``DepthToSpace(Conv(W', B', pads'), s)`` of ``v``: returns ``W', B', pads'``.

    ``weight [C_out, C, kh, kw]`` → ``[s²·C_out, s²·C, kh', kw']``: output
    channel ``(r_h·s + r_w)·C_out + o`` (output phase), input channel ``(q_h·s
    + q_w)·C + c`` (input phase, the DCR order). ``pads`` must be "same"
    (``pt + pb = kh - 1``, ``pl + pr = kw - 1``) so that zero padding of the
    upsampled image is zero padding of the phases.
    """
    c_out, c_in, kh, kw = weight.shape
    pt, pl = pads[0], pads[1]
    size_h, top, bottom, taps_h = _polyphase_axis(kh, pt, s)
    size_w, left, right, taps_w = _polyphase_axis(kw, pl, s)
    new = np.zeros([s * s * c_out, s * s * c_in, size_h, size_w], weight.dtype)
    for r_h, q_h, a_h, t_h in taps_h:
        for r_w, q_w, a_w, t_w in taps_w:
            o, c = (r_h * s + r_w) * c_out, (q_h * s + q_w) * c_in
            new[o : o + c_out, c : c + c_in, a_h, a_w] += weight[:, :, t_h, t_w]
    new_bias = None if bias is None else np.tile(bias, s * s)
    return new, new_bias, [top, left, bottom, right]


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def fold_depth_to_space(model, max_out_channels: int = FOLD_MAX_OUT_CHANNELS) -> int:
    """Rewrites ``DepthToSpace(s) → Conv [→ activation]`` into ``Conv' [→
    activation] → DepthToSpace(s)`` in ``model`` (an ``onnx.ModelProto``, in
    place) wherever the Conv has at most ``max_out_channels`` output channels;
    returns how many were rewritten. See ``polyphase_conv_weights``."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}

    def consumers(name):
        return [n for n in graph.node if name in n.input]

    folded = 0
    for d2s in [n for n in graph.node if n.op_type == "DepthToSpace"]:
        attrs = _attrs(d2s)
        s = attrs["blocksize"]
        mode = attrs.get("mode", b"DCR")
        users = consumers(d2s.output[0])
        if mode not in (b"DCR", "DCR") or d2s.output[0] in outputs or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        c = _attrs(conv)
        if len(conv.input) < 2 or conv.input[0] != d2s.output[0] or conv.input[1] not in inits:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.ndim != 4 or weight.shape[0] > max_out_channels:
            continue
        kh, kw = weight.shape[2:]
        pads = list(c.get("pads", [0, 0, 0, 0]))
        if (
            c.get("group", 1) != 1
            or any(v != 1 for v in c.get("strides", [1, 1]))
            or any(v != 1 for v in c.get("dilations", [1, 1]))
            or c.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or pads[0] + pads[2] != kh - 1
            or pads[1] + pads[3] != kw - 1
        ):
            continue
        bias = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else None
        new_weight, new_bias, new_pads = polyphase_conv_weights(weight, bias, pads, s)
        prefix = conv.name or conv.output[0]
        weight_name, bias_name, conv_out = f"{prefix}__polyphase_W", f"{prefix}__polyphase_B", f"{prefix}__polyphase:0"
        graph.initializer.append(numpy_helper.from_array(new_weight, weight_name))
        inputs = [d2s.input[0], weight_name]
        if new_bias is not None:
            graph.initializer.append(numpy_helper.from_array(new_bias, bias_name))
            inputs.append(bias_name)
        new_conv = onnx.helper.make_node(
            "Conv",
            inputs,
            [conv_out],
            name=f"{prefix}__polyphase",
            pads=new_pads,
            kernel_shape=list(new_weight.shape[2:]),
            strides=[1, 1],
            dilations=[1, 1],
            group=1,
        )
        chain, last = [new_conv], conv.output[0]
        after = consumers(conv.output[0])
        if conv.output[0] not in outputs and len(after) == 1 and after[0].op_type in _ONNX_ELEMENTWISE:
            act = after[0]  # act(d2s(v)) = d2s(act(v))
            last = act.output[0]
            moved = onnx.helper.make_node(
                act.op_type, [conv_out], [f"{prefix}__polyphase_{act.op_type}:0"], name=f"{act.name}__polyphase"
            )
            moved.attribute.extend(act.attribute)
            chain.append(moved)
            graph.node.remove(act)
        chain.append(
            onnx.helper.make_node(
                "DepthToSpace", [chain[-1].output[0]], [last], name=f"{prefix}__depth_to_space", blocksize=s, mode="DCR"
            )
        )
        position = list(graph.node).index(conv)
        graph.node.remove(conv)
        graph.node.remove(d2s)
        position -= 1  # d2s came before conv
        for offset, node in enumerate(chain):
            graph.node.insert(position + offset, node)
        folded += 1

    used = {name for n in graph.node for name in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    produced = {name for n in graph.node for name in n.output} | {i.name for i in graph.input}
    for info in [v for v in graph.value_info if v.name not in produced]:
        graph.value_info.remove(info)
    return folded
