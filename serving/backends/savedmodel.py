"""The SavedModel backend: ``EXPORT_DIR/savedmodel/<name>/<N>/`` through TensorFlow
(``tf.saved_model.load``), every version the export's ``models.config`` policy
keeps, as TF Serving would. Pictures are checked (and camera photos turned
upright / reduced) by the runtime's Pillow codec first.

The only serving module that imports TensorFlow; ``serving.backends.load``
imports it only for ``--backend savedmodel``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving.backends.base import LoadError, Pipeline, Servable, decode_request_picture, picture_bytes
from serving.backends.repository import Repository, served_versions, version_policy
from serving.errors import InvalidArgument
from serving.runtime.contract import IMAGE_INPUT, MODELS_CONFIG, SAVEDMODEL_DIR, ContractError, read_metadata
from serving.runtime.images import encode_png
from serving.signatures import FLOAT32, STRING, Signature, TensorSpec


def graph_pictures(data: np.ndarray, image_shape) -> np.ndarray:
    """``[n]`` pictures for the SavedModel's in-graph decoding, checked (400 for a
    bad one): a picture decoded as stored is passed unchanged (the graph
    decodes and resizes it itself); a camera photo that needed turning upright
    or a reducing decode goes as a lossless PNG of ``decode_image``'s
    result, so both backends edit the same upright picture."""
    out = []
    for i, item in enumerate(data):
        pixels, as_stored = decode_request_picture(i, item, image_shape)
        out.append(picture_bytes(item) if as_stored else encode_png(pixels))
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


_TF_TO_DTYPE = {"DT_FLOAT": FLOAT32, "DT_STRING": STRING}


def read_signature_defs(path) -> dict[str, Signature]:
    """The serving ``SignatureDef``s of ``path/saved_model.pb`` (tag ``serve``), as TF Serving reads them."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    meta_graph = next((m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags), None)
    if meta_graph is None:
        raise LoadError(f"{path} has no MetaGraph tagged 'serve'.")

    def specs(infos, where):
        out = []
        for key, info in sorted(infos.items()):
            dtype = _TF_TO_DTYPE.get(types_pb2.DataType.Name(info.dtype))
            if dtype is None or info.tensor_shape.unknown_rank:
                raise LoadError(
                    f"{where} {key!r} is {types_pb2.DataType.Name(info.dtype)}; "
                    "only DT_FLOAT/DT_STRING of known rank are served."
                )
            out.append(TensorSpec(key, dtype, tuple(int(d.size) for d in info.tensor_shape.dim), tensor_name=info.name))
        return tuple(out)

    return {
        name: Signature(name, specs(sig.inputs, f"{name} input"), specs(sig.outputs, f"{name} output"), sig.method_name)
        for name, sig in sorted(meta_graph.signature_def.items())
        if not name.startswith("__")  # __saved_model_init_op is not a serving signature
    }


class SavedModelServable(Servable):
    """One SavedModel version through TensorFlow (``tf.saved_model.load``).

    Pictures for ``manipulate_image`` are checked with Pillow first, so an
    unreadable one is that request's 400 and not its batch's failure.
    """

    platform = "tensorflow_savedmodel"

    def __init__(self, path, name: str, version: int, threads: int = 1, image_shape=None):
        try:  # before TensorFlow's runtime starts; a no-op (RuntimeError) if it has
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(max(2, threads))
        except RuntimeError:
            pass
        self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        pipelines = {}
        for sig_name, signature in read_signature_defs(path).items():
            function = self._loaded.signatures[sig_name]
            prepare = None
            if image_shape and any(spec.name == IMAGE_INPUT and spec.dtype == STRING for spec in signature.inputs):
                prepare = self._checked_images(image_shape)
            pipelines[sig_name] = Pipeline(signature, self._caller(function), prepare)
        super().__init__(name, version, pipelines, image_shape)

    @staticmethod
    def _checked_images(image_shape):
        def prepare(feeds):
            return {**feeds, IMAGE_INPUT: graph_pictures(feeds[IMAGE_INPUT], image_shape)}

        return prepare

    @staticmethod
    def _caller(function):
        def compute(feeds):
            outputs = function(**{name: tf.constant(value) for name, value in feeds.items()})
            return {name: value.numpy() for name, value in outputs.items()}

        return compute

    def error(self, err):
        if isinstance(err, tf.errors.InvalidArgumentError):
            return InvalidArgument(err.message)
        return super().error(err)


def load_savedmodel(export_dir, threads: int = 1) -> Repository:
    """Every model under ``EXPORT_DIR/savedmodel/`` with the versions its policy in
    ``savedmodel/models.config`` keeps (all versions for a ``csvae export``)."""
    base = Path(export_dir) / SAVEDMODEL_DIR
    if not base.is_dir():
        raise LoadError(
            f"{export_dir} has no SavedModel ({SAVEDMODEL_DIR}/); use --backend onnx or re-export with savedmodel."
        )
    image_shape = None
    try:
        image_shape = (read_metadata(export_dir).get("model") or {}).get("image_shape")
    except ContractError:
        pass
    servables = []
    for model_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        available = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        for version in served_versions(available, version_policy(base / MODELS_CONFIG, model_dir.name)):
            path = model_dir / str(version)
            servables.append(SavedModelServable(path, model_dir.name, version, threads, image_shape))
    if not servables:
        raise LoadError(f"{base} holds no <name>/<version>/saved_model.pb to serve.")
    return Repository(servables)
