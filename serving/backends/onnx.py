"""The ONNX backend: an export's ``onnx/*.onnx`` run with onnxruntime.

Nothing in this file imports TensorFlow or Keras (start-up in a fraction of a
second, memory in the tens of MB). Signatures map to the ONNX files:
``encode``, ``decode``, ``manipulate`` (= ``serving_default``), ``edit_at``;
for a CSVAE also ``reconstruct`` (encode -> decode of the posterior means) and
``sample`` (decode of ``eps_z`` and ``mean(y) + scale(y)·eps_w`` from the
prior in ``metadata.json``); for an image model ``manipulate_image`` (Pillow
decode -> resize -> ``manipulate.onnx`` -> PNG encode).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from serving.backends.base import LoadError, Pipeline, Servable, decode_request_picture
from serving.backends.repository import Repository
from serving.runtime.contract import (
    DEFAULT_EDIT_SIGNATURE,
    IMAGE_INPUT,
    IMAGE_OUTPUT,
    IMAGE_SIGNATURE,
    SERVING_DEFAULT,
    ContractError,
    onnx_file,
    onnx_files,
    prior_w,
    read_metadata,
)
from serving.runtime.images import encode_png
from serving.runtime.sessions import onnx_session
from serving.signatures import FLOAT32, STRING, Signature, TensorSpec


def decode_images(data: np.ndarray, image_shape) -> np.ndarray:
    """``[n]`` encoded pictures -> ``[n, H, W, C]`` float32; ``InvalidArgument`` names the bad one."""
    return np.stack([decode_request_picture(i, item, image_shape)[0] for i, item in enumerate(data)])


def encode_images(pixels: np.ndarray) -> np.ndarray:
    """``[n, H, W, C]`` in [0, 1] -> ``[n]`` object array of PNG bytes."""
    return np.array([encode_png(image) for image in pixels] or [], dtype=object)


def _onnx_spec(arg) -> TensorSpec:
    if arg.type != "tensor(float)":
        raise LoadError(f"ONNX tensor {arg.name!r} is {arg.type}; the server serves float32 interfaces only.")
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, FLOAT32, shape, tensor_name=arg.name)


def _session_pipeline(name: str, session) -> Pipeline:
    inputs = tuple(sorted((_onnx_spec(i) for i in session.get_inputs()), key=lambda s: s.name))
    outputs = tuple(sorted((_onnx_spec(o) for o in session.get_outputs()), key=lambda s: s.name))
    output_names = [spec.name for spec in outputs]

    def compute(feeds: dict) -> dict:
        return dict(zip(output_names, session.run(output_names, {spec.name: feeds[spec.name] for spec in inputs})))

    return Pipeline(Signature(name, inputs, outputs), compute)


class OnnxServable(Servable):
    """The ONNX files of an export, run with onnxruntime (no TensorFlow).

    Args:
      export_dir: ``csvae export`` output with ``onnx/`` and ``metadata.json``.
      threads: onnxruntime intra-op threads per session.
    """

    platform = "onnxruntime_onnx"

    def __init__(self, export_dir, threads: int = 1):
        export_dir = Path(export_dir)
        try:
            metadata = read_metadata(export_dir)
        except ContractError as err:
            raise LoadError(str(err)) from err
        files = onnx_files(metadata)
        if DEFAULT_EDIT_SIGNATURE not in files:
            raise LoadError(
                f"{export_dir} has no ONNX export ({onnx_file(DEFAULT_EDIT_SIGNATURE)}); "
                "use --backend savedmodel or re-export with ONNX."
            )
        sessions = {}
        for name, file in files.items():
            path = export_dir / file
            if not path.is_file():
                raise LoadError(f"{path} is listed in metadata.json but missing.")
            try:
                sessions[name] = onnx_session(path, threads)
            except Exception as err:  # onnxruntime raises its own exception types
                raise LoadError(f"onnxruntime cannot load {path}: {err}") from err
        self.model = metadata.get("model") or {}
        pipelines = {name: _session_pipeline(name, session) for name, session in sessions.items()}
        pipelines.update(self._composed(pipelines))
        manipulate = pipelines[DEFAULT_EDIT_SIGNATURE]
        default = dataclasses.replace(manipulate, signature=manipulate.signature.renamed(SERVING_DEFAULT))
        pipelines = {SERVING_DEFAULT: default, **pipelines}
        name, version = metadata.get("name") or "csvae", metadata.get("version") or 1
        super().__init__(name, version, pipelines, self.model.get("image_shape"))

    def _composed(self, pipelines: dict) -> dict:
        """``reconstruct``, ``sample`` (CSVAE) and ``manipulate_image`` built from the ONNX files."""
        composed = {}
        encode, decode = pipelines.get("encode"), pipelines.get("decode")
        prior, w_dim = self.model.get("prior"), self.model.get("w_dim")
        if (
            encode
            and decode
            and prior
            and w_dim
            and {"z_mean", "w_mean"} <= set(encode.signature.output_names)
            and set(decode.signature.input_names) == {"z", "w"}
        ):
            (decoded,) = decode.signature.outputs

            def reconstruct(feeds):
                means = encode.compute(feeds)
                return {"x_reconstruction": decode.compute({"z": means["z_mean"], "w": means["w_mean"]})[decoded.name]}

            def sample(feeds):
                mean, scale = prior_w(feeds["y"], prior, w_dim)
                drawn = mean + scale * feeds["eps_w"]
                return {"x_sample": decode.compute({"z": feeds["eps_z"], "w": drawn})[decoded.name]}

            y = encode.signature.input("y")
            z, w = decode.signature.input("z"), decode.signature.input("w")
            composed["reconstruct"] = Pipeline(
                Signature(
                    "reconstruct", encode.signature.inputs, (dataclasses.replace(decoded, name="x_reconstruction"),)
                ),
                reconstruct,
            )
            composed["sample"] = Pipeline(
                Signature(
                    "sample",
                    (
                        dataclasses.replace(z, name="eps_z", tensor_name="eps_z"),
                        dataclasses.replace(w, name="eps_w", tensor_name="eps_w"),
                        y,
                    ),
                    (dataclasses.replace(decoded, name="x_sample"),),
                ),
                sample,
            )
        image_shape = self.model.get("image_shape")
        manipulate = pipelines[DEFAULT_EDIT_SIGNATURE]
        data_inputs = [s for s in manipulate.signature.inputs if image_shape and list(s.shape[1:]) == list(image_shape)]
        if data_inputs and len(manipulate.signature.outputs) == 1:
            (data_input,), (edited,) = data_inputs[:1], manipulate.signature.outputs
            others = tuple(s for s in manipulate.signature.inputs if s is not data_input)

            def prepare(feeds):
                prepared = {name: value for name, value in feeds.items() if name != IMAGE_INPUT}
                prepared[data_input.name] = decode_images(feeds[IMAGE_INPUT], image_shape)
                return prepared

            def finish(outputs):
                return {IMAGE_OUTPUT: encode_images(outputs[edited.name])}

            composed[IMAGE_SIGNATURE] = Pipeline(
                Signature(
                    IMAGE_SIGNATURE,
                    tuple(sorted((TensorSpec(IMAGE_INPUT, STRING, (-1,), IMAGE_INPUT), *others), key=lambda s: s.name)),
                    (TensorSpec(IMAGE_OUTPUT, STRING, (-1,), IMAGE_OUTPUT),),
                ),
                manipulate.compute,
                prepare,
                finish,
            )
        return composed


def load_onnx(export_dir, threads: int = 1) -> Repository:
    """The export's ONNX files as the one version of one model."""
    return Repository([OnnxServable(export_dir, threads)])
