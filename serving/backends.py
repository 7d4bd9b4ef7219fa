"""Backends: what runs an export's signatures, and which versions are served.

- ``OnnxServable`` runs ``EXPORT_DIR/onnx/*.onnx`` with onnxruntime and
  imports neither TensorFlow nor Keras (start-up in a fraction of a second,
  memory in the tens of MB). Signatures map to the ONNX files: ``encode``,
  ``decode``, ``manipulate`` (= ``serving_default``), ``edit_at``; for a
  CSVAE also ``reconstruct`` (encode -> decode of the posterior means) and
  ``sample`` (decode of ``eps_z`` and ``mean(y) + scale(y)·eps_w`` from the
  prior in ``metadata.json``); for an image model ``manipulate_image``
  (Pillow decode -> resize -> ``manipulate.onnx`` -> PNG encode).
- ``SavedModelServable`` runs ``EXPORT_DIR/savedmodel/<name>/<N>/`` through
  TensorFlow (``tf.saved_model.load``), every version the export's
  ``models.config`` policy keeps, as TF Serving would. Pictures are checked
  (and camera photos turned upright / reduced) by the same Pillow code first.
- ``Repository``: model name -> versions -> servable; the newest version
  answers requests that name none.

A servable runs *batches of requests* (``run_batch``): each request is
prepared on its own (a bad picture fails only its request), the prepared
arrays of all requests are concatenated and computed in one call, and the
outputs are split back per request.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
from pathlib import Path
from typing import Callable

import numpy as np

from keras_csvae import edge
from serving.errors import Internal, InvalidArgument, NotFound, ServingError
from serving.signatures import DEFAULT_SIGNATURE, FLOAT32, STRING, Signature, TensorSpec

log = logging.getLogger("serving")

BACKENDS = ("onnx", "savedmodel")
IMAGE_SIGNATURE, IMAGE_INPUT, IMAGE_OUTPUT = "manipulate_image", "image_bytes", "edited_image_bytes"


class LoadError(ValueError):
    """The export cannot be served (missing files, nothing to load); one line for the CLI."""


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """How one signature runs.

    Attributes:
      signature: what clients see.
      compute: ``{input: [n, ...]} -> {output: [n, ...]}`` on the whole batch.
      prepare: one request's inputs -> ``compute``'s inputs (e.g. PNG bytes ->
        pixels); raises ``ServingError`` for that request only.
      finish: one request's ``compute`` outputs -> the signature's outputs.
    """

    signature: Signature
    compute: Callable[[dict], dict]
    prepare: Callable[[dict], dict] | None = None
    finish: Callable[[dict], dict] | None = None


def _concat(parts: list[dict]) -> tuple[dict, list[int]]:
    """Request dicts -> one dict of arrays concatenated on axis 0, and the row counts."""
    rows = [len(next(iter(p.values()))) for p in parts]
    if len(parts) == 1:
        return parts[0], rows
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, rows


def _split(outputs: dict, rows: list[int]) -> list[dict]:
    """The inverse of ``_concat`` on the outputs (contiguous views, row order kept)."""
    if len(rows) == 1:
        return [outputs]
    bounds = np.cumsum(rows)[:-1]
    pieces = {name: np.split(value, bounds) for name, value in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(rows))]


class Servable:
    """One version of one model: named ``Pipeline``s and how to run a batch of requests."""

    platform = "unknown"

    def __init__(self, name: str, version: int, pipelines: dict[str, Pipeline], image_shape=None):
        self.name, self.version = name, int(version)
        self.pipelines = pipelines
        self.image_shape = tuple(image_shape) if image_shape else None

    @property
    def signatures(self) -> dict[str, Signature]:
        return {name: pipeline.signature for name, pipeline in self.pipelines.items()}

    def error(self, err: Exception) -> ServingError:
        """A backend exception as the HTTP error TF Serving would answer (500 unless known)."""
        if isinstance(err, ServingError):
            return err
        log.exception("inference failed", exc_info=err)
        return Internal(f"{type(err).__name__}: {err}")

    def run_batch(self, signature: str, requests: list[dict]) -> list:
        """Runs ``requests`` (each ``{input: array [rows, ...]}``) in one computation.

        Returns one entry per request: its ``{output: array}`` or the
        ``ServingError`` it caused. If the batched computation fails, each
        request is retried alone, so one bad request cannot fail the others.
        """
        pipeline = self.pipelines[signature]
        results: list = [None] * len(requests)
        prepared = []
        for i, inputs in enumerate(requests):
            try:
                prepared.append((i, pipeline.prepare(inputs) if pipeline.prepare else inputs))
            except Exception as err:  # noqa: BLE001 - becomes this request's answer
                results[i] = self.error(err)
        if not prepared:
            return results
        try:
            merged, rows = _concat([inputs for _, inputs in prepared])
            outputs = _split(pipeline.compute(merged), rows)
        except Exception as err:  # noqa: BLE001
            if len(prepared) == 1:
                results[prepared[0][0]] = self.error(err)
                return results
            outputs = []
            for i, inputs in prepared:
                try:
                    outputs.append(pipeline.compute(inputs))
                except Exception as single_err:  # noqa: BLE001
                    outputs.append(self.error(single_err))
        for (i, _), output in zip(prepared, outputs):
            if isinstance(output, ServingError):
                results[i] = output
                continue
            try:
                results[i] = pipeline.finish(output) if pipeline.finish else output
            except Exception as err:  # noqa: BLE001
                results[i] = self.error(err)
        return results

    def run(self, signature: str, inputs: dict) -> dict:
        """One request, synchronously; raises its ``ServingError``."""
        (result,) = self.run_batch(signature, [inputs])
        if isinstance(result, Exception):
            raise result
        return result

    def warm_up(self) -> None:
        """Runs every signature once at batch 1, so the first client does not pay for
        kernel selection and allocation."""
        for name, pipeline in self.pipelines.items():
            inputs = {}
            for spec in pipeline.signature.inputs:
                if spec.dtype == STRING and self.image_shape:
                    inputs[spec.name] = np.array([edge.encode_png(np.zeros(self.image_shape, np.float32))], object)
                elif spec.dtype == FLOAT32 and all(d > 0 for d in spec.shape[1:]):
                    inputs[spec.name] = np.zeros([1, *spec.shape[1:]], np.float32)
            if len(inputs) == len(pipeline.signature.inputs):
                self.run_batch(name, [inputs])

    def close(self) -> None:
        pass


# -- pictures in signatures ------------------------------------------------------------------------
_PICTURE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def picture_bytes(item) -> bytes:
    """The bytes of a picture as a client sent them: raw (binary tensor data,
    ``{"b64": ...}``, ``content_type: base64``), or the base64 text of a picture
    as a plain JSON string. Picture bytes are never valid UTF-8 text, so stock
    clients' JSON paths (tritonclient and KServe with ``binary_data=False``)
    can only send them as base64 text, without any parameter; a picture's
    leading bytes are never base64 text, so this reading is unambiguous."""
    item = bytes(item)
    if item.startswith(_PICTURE_MAGIC):
        return item
    text = b"".join(item.split())  # base64 tools wrap lines
    try:
        decoded = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return item  # decode_image says what is wrong with it
    return decoded if decoded.startswith(_PICTURE_MAGIC) else item


def decode_images(data: np.ndarray, image_shape) -> np.ndarray:
    """``[n]`` encoded pictures -> ``[n, H, W, C]`` float32; ``InvalidArgument`` names the bad one."""
    return np.stack([_decode(i, item, image_shape)[0] for i, item in enumerate(data)])


def _decode(i: int, item, image_shape) -> tuple[np.ndarray, bool]:
    try:
        return edge.decode_picture(picture_bytes(item), image_shape)
    except edge.ImageError as err:
        raise InvalidArgument(f"{IMAGE_INPUT}[{i}]: {err}") from err


def graph_pictures(data: np.ndarray, image_shape) -> np.ndarray:
    """``[n]`` pictures for the SavedModel's in-graph decoding, checked (400 for a
    bad one): a picture decoded as stored is passed unchanged (the graph
    decodes and resizes it itself); a camera photo that needed turning upright
    or a reducing decode goes as a lossless PNG of ``edge.decode_image``'s
    result, so both backends edit the same upright picture."""
    out = []
    for i, item in enumerate(data):
        pixels, as_stored = _decode(i, item, image_shape)
        out.append(picture_bytes(item) if as_stored else edge.encode_png(pixels))
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


def encode_images(pixels: np.ndarray) -> np.ndarray:
    """``[n, H, W, C]`` in [0, 1] -> ``[n]`` object array of PNG bytes."""
    return np.array([edge.encode_png(image) for image in pixels] or [], dtype=object)


# -- ONNX ---------------------------------------------------------------------------------------------
def _onnx_spec(arg) -> TensorSpec:
    if arg.type != "tensor(float)":
        raise LoadError(f"ONNX tensor {arg.name!r} is {arg.type}; the server serves float32 interfaces only.")
    return TensorSpec(arg.name, FLOAT32, tuple(d if isinstance(d, int) else -1 for d in arg.shape), tensor_name=arg.name)


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
            metadata = edge.read_metadata(export_dir)
        except edge.EditError as err:
            raise LoadError(str(err)) from err
        files = {name: info for name, info in (metadata.get("onnx") or {}).items() if "." not in name}  # not manipulate.int8
        if "manipulate" not in files:
            raise LoadError(f"{export_dir} has no ONNX export (onnx/manipulate.onnx); use --backend savedmodel or re-export with ONNX.")
        sessions = {}
        for name, info in files.items():
            path = export_dir / info["file"]
            if not path.is_file():
                raise LoadError(f"{path} is listed in metadata.json but missing.")
            try:
                sessions[name] = edge.onnx_session(path, threads)
            except Exception as err:  # onnxruntime raises its own exception types
                raise LoadError(f"onnxruntime cannot load {path}: {err}") from err
        self.model = metadata.get("model") or {}
        pipelines = {name: _session_pipeline(name, session) for name, session in sessions.items()}
        pipelines.update(self._composed(pipelines))
        manipulate = pipelines["manipulate"]
        default = dataclasses.replace(manipulate, signature=manipulate.signature.renamed(DEFAULT_SIGNATURE))
        pipelines = {DEFAULT_SIGNATURE: default, **pipelines}
        super().__init__(metadata.get("name") or "csvae", metadata.get("version") or 1, pipelines, self.model.get("image_shape"))

    def _composed(self, pipelines: dict) -> dict:
        """``reconstruct``, ``sample`` (CSVAE) and ``manipulate_image`` built from the ONNX files."""
        composed = {}
        encode, decode = pipelines.get("encode"), pipelines.get("decode")
        prior, w_dim = self.model.get("prior"), self.model.get("w_dim")
        if encode and decode and prior and w_dim and {"z_mean", "w_mean"} <= set(encode.signature.output_names) \
                and set(decode.signature.input_names) == {"z", "w"}:
            (decoded,) = decode.signature.outputs

            def reconstruct(feeds):
                means = encode.compute(feeds)
                return {"x_reconstruction": decode.compute({"z": means["z_mean"], "w": means["w_mean"]})[decoded.name]}

            def sample(feeds):
                mean, scale = edge.prior_w(feeds["y"], prior, w_dim)
                return {"x_sample": decode.compute({"z": feeds["eps_z"], "w": mean + scale * feeds["eps_w"]})[decoded.name]}

            y = encode.signature.input("y")
            z, w = decode.signature.input("z"), decode.signature.input("w")
            composed["reconstruct"] = Pipeline(
                Signature("reconstruct", encode.signature.inputs, (dataclasses.replace(decoded, name="x_reconstruction"),)), reconstruct
            )
            composed["sample"] = Pipeline(
                Signature(
                    "sample",
                    (dataclasses.replace(z, name="eps_z", tensor_name="eps_z"), dataclasses.replace(w, name="eps_w", tensor_name="eps_w"), y),
                    (dataclasses.replace(decoded, name="x_sample"),),
                ),
                sample,
            )
        image_shape = self.model.get("image_shape")
        manipulate = pipelines["manipulate"]
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


# -- SavedModel ---------------------------------------------------------------------------------------------
_TF_TO_DTYPE = {"DT_FLOAT": FLOAT32, "DT_STRING": STRING}


def read_signature_defs(path) -> dict[str, Signature]:
    """The serving ``SignatureDef``s of ``path/saved_model.pb`` (tag ``serve``), as TF Serving reads them."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

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
                raise LoadError(f"{where} {key!r} is {types_pb2.DataType.Name(info.dtype)}; only DT_FLOAT/DT_STRING of known rank are served.")
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
        import tensorflow as tf

        self._tf = tf
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

    def _caller(self, function):
        tf = self._tf

        def compute(feeds):
            outputs = function(**{name: tf.constant(value) for name, value in feeds.items()})
            return {name: value.numpy() for name, value in outputs.items()}

        return compute

    def error(self, err):
        if isinstance(err, self._tf.errors.InvalidArgumentError):
            return InvalidArgument(err.message)
        return super().error(err)


# -- versions ------------------------------------------------------------------------------------------
def version_policy(models_config: Path, name: str):
    """``(kind, values)`` of ``name``'s ``model_version_policy`` in a TF Serving
    model config file: ``("all", ())``, ``("latest", (n,))`` or ``("specific",
    (v, ...))``; TF Serving's default ``("latest", (1,))`` when none is given."""
    if not models_config.is_file():
        return "latest", (1,)
    text = re.sub(r"#[^\n]*", "", models_config.read_text())
    for block in re.split(r"\bconfig\s*\{", text)[1:]:
        if not re.search(r'name\s*:\s*"' + re.escape(name) + '"', block):
            continue
        policy = re.search(r"model_version_policy\s*\{\s*(all|latest|specific)\s*\{([^}]*)\}", block)
        if not policy:
            break
        kind, body = policy.groups()
        numbers = tuple(int(n) for n in re.findall(r"\d+", body))
        return kind, (numbers or (1,)) if kind == "latest" else numbers
    return "latest", (1,)


def served_versions(available: list[int], policy) -> list[int]:
    kind, values = policy
    if kind == "all":
        return sorted(available)
    if kind == "specific":
        return sorted(v for v in available if v in values)
    return sorted(available)[-values[0]:] if values[0] > 0 else []


class Repository:
    """Model name -> version -> ``Servable``; TF Serving's lookup rules and messages."""

    def __init__(self, servables: list[Servable]):
        self.models: dict[str, dict[int, Servable]] = {}
        for servable in servables:
            self.models.setdefault(servable.name, {})[servable.version] = servable

    @property
    def platform(self) -> str:
        return next(s for versions in self.models.values() for s in versions.values()).platform

    def versions(self, name: str) -> list[int]:
        if name not in self.models:
            raise NotFound(f"Could not find any versions of model {name}")
        return sorted(self.models[name])

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request; the newest version without ``version``."""
        if label is not None:
            # No version labels are configured (TF Serving answers an unknown label so).
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        versions = self.models.get(name)
        if not versions:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def servables(self) -> list[Servable]:
        return [s for versions in self.models.values() for s in versions.values()]

    def close(self) -> None:
        for servable in self.servables():
            servable.close()


def load_onnx(export_dir, threads: int = 1) -> Repository:
    return Repository([OnnxServable(export_dir, threads)])


def load_savedmodel(export_dir, threads: int = 1) -> Repository:
    """Every model under ``EXPORT_DIR/savedmodel/`` with the versions its policy in
    ``savedmodel/models.config`` keeps (all versions for a ``csvae export``)."""
    base = Path(export_dir) / "savedmodel"
    if not base.is_dir():
        raise LoadError(f"{export_dir} has no SavedModel (savedmodel/); use --backend onnx or re-export with savedmodel.")
    image_shape = None
    try:
        image_shape = (edge.read_metadata(export_dir).get("model") or {}).get("image_shape")
    except edge.EditError:
        pass
    servables = []
    for model_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        available = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        for version in served_versions(available, version_policy(base / "models.config", model_dir.name)):
            servables.append(SavedModelServable(model_dir / str(version), model_dir.name, version, threads, image_shape))
    if not servables:
        raise LoadError(f"{base} holds no <name>/<version>/saved_model.pb to serve.")
    return Repository(servables)


def load(export_dir, backend: str = "onnx", threads: int = 1, warm_up: bool = True) -> Repository:
    """The repository of ``export_dir`` with ``backend`` (``onnx`` or ``savedmodel``)."""
    if not Path(export_dir).is_dir():
        raise LoadError(f"--export {export_dir} does not exist.")
    if backend not in BACKENDS:
        raise LoadError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}.")
    repository = load_onnx(export_dir, threads) if backend == "onnx" else load_savedmodel(export_dir, threads)
    if warm_up:
        for servable in repository.servables():
            servable.warm_up()
    return repository
