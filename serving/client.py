"""A small client for the TF Serving REST API (the real server or ``csvae serve``).

Standard library only (plus orjson/numpy when installed, for speed), so it
can be copied into any app::

    from serving.client import TFServingClient

    client = TFServingClient("http://127.0.0.1:8501", model="csvae")
    client.status()                       # {"model_version_status": [{"version": "1", "state": "AVAILABLE", ...}]}
    edited_png = client.manipulate_image(open("face.png", "rb").read(), [1, 0, 0])
    client.predict([{"x": pixels, "y": [0, 0, 0], "y_target": [1, 0, 0]}])   # row format -> predictions
    client.predict(inputs={"x": batch, "y": labels, "y_target": targets})     # columnar -> outputs

Requests and answers are exactly TF Serving's (https://www.tensorflow.org/tfx/serving/api_rest);
an error answer raises ``ClientError`` with its status and message.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

try:  # optional: faster, and writes numpy arrays directly
    import orjson
except ImportError:  # pragma: no cover - the project pins orjson
    orjson = None

from serving.runtime.contract import IMAGE_INPUT, IMAGE_SIGNATURE


class ClientError(Exception):
    """An error answer: HTTP ``status`` and the server's ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def _dumps(value) -> bytes:
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    def default(obj):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    return json.dumps(value, default=default).encode()


def _loads(data: bytes):
    return orjson.loads(data) if orjson is not None else json.loads(data)


def b64(data: bytes) -> dict:
    """Binary data as TF Serving's JSON wants it: ``{"b64": "..."}``."""
    return {"b64": base64.b64encode(data).decode("ascii")}


class TFServingClient:
    """TF Serving REST API v1 for one model.

    Args:
      url: server root, e.g. ``http://127.0.0.1:8501``.
      model: model name (``csvae`` unless exported with ``--name``).
      version: pin a version (``/versions/N``); the newest answers otherwise.
      label: pin a version label (``/labels/L``) instead.
      timeout: seconds per request.
      label_names: the model's labels, to pass targets as ``{"glasses": 1}``
        (``metadata.json``'s ``model.label_names``; TF Serving's metadata has none).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8501",
        model: str = "csvae",
        *,
        version: int | None = None,
        label: str | None = None,
        timeout: float = 30.0,
        label_names=None,
    ):
        if version is not None and label is not None:
            raise ValueError("pin a version or a label, not both")
        self.url, self.model, self.version, self.label = url.rstrip("/"), model, version, label
        self.timeout = timeout
        self.label_names = tuple(label_names) if label_names else None
        self._image_input_names = None

    @property
    def model_path(self) -> str:
        path = f"/v1/models/{urllib.parse.quote(self.model, safe='')}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.label is not None:
            path += f"/labels/{urllib.parse.quote(self.label, safe='')}"
        return path

    def request(self, method: str, path: str, body=None):
        """One HTTP request; returns the decoded JSON answer or raises ``ClientError``."""
        data = None if body is None else (body if isinstance(body, bytes) else _dumps(body))
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _loads(response.read())
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                message = _loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", errors="replace") or err.reason
            raise ClientError(err.code, message) from None

    # -- the API -----------------------------------------------------------------------------
    def status(self) -> dict:
        """``GET /v1/models/{model}[/versions/{v}]``: ``{"model_version_status": [...]}``."""
        return self.request("GET", self.model_path)

    def metadata(self) -> dict:
        """``GET .../metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``."""
        return self.request("GET", self.model_path + "/metadata")

    def signatures(self) -> dict:
        """``{signature: {"inputs": ..., "outputs": ..., "method_name": ...}}`` from the metadata."""
        return self.metadata()["metadata"]["signature_def"]["signature_def"]

    def predict(self, instances=None, *, inputs=None, signature_name: str | None = None):
        """``POST ...:predict``. Row format (``instances``) returns ``predictions``;
        columnar (``inputs``) returns ``outputs``. Arrays may be numpy arrays;
        binary values go as ``b64(data)``."""
        if (instances is None) == (inputs is None):
            raise ValueError("give instances (row format) or inputs (columnar), not both")
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body = {"signature_name": signature_name, **body}
        answer = self.request("POST", self.model_path + ":predict", body)
        return answer["predictions"] if instances is not None else answer["outputs"]

    def _target(self, target, base=None) -> list:
        """Label values in label order; a ``{label: value}`` dict is filled in from
        ``base`` (the source labels), else 0."""
        if isinstance(target, dict):
            if not self.label_names:
                raise ValueError("targets as {label: value} need label_names=... (metadata.json's model.label_names)")
            unknown = sorted(set(target) - set(self.label_names))
            if unknown:
                raise ValueError(f"unknown label(s) {unknown}; labels: {', '.join(self.label_names)}")
            base = base or [0.0] * len(self.label_names)
            return [float(target.get(name, b)) for name, b in zip(self.label_names, base)]
        return [float(v) for v in target]

    def _source(self, target, source) -> list:
        """The picture's own labels: ``source`` if given; else, for a ``{label: value}``
        target, each named label the opposite of its target (the edit switches it)
        and the others 0; for a full target vector, all 0."""
        if source is not None:
            return self._target(source)
        if isinstance(target, dict):
            self._target(target)  # checks the names
            return [float(name in target and float(target[name]) == 0) for name in self.label_names]
        return [0.0] * len(self._target(target))

    def _image_inputs(self) -> set:
        """Input names of ``manipulate_image`` (read once from the model's metadata)."""
        if self._image_input_names is None:
            signatures = self.metadata()["metadata"]["signature_def"]["signature_def"]
            self._image_input_names = set(signatures.get(IMAGE_SIGNATURE, {}).get("inputs", {}))
        return self._image_input_names

    def manipulate_images(self, images, targets, sources=None) -> list[bytes]:
        """Edits encoded pictures (PNG/JPEG bytes) to ``targets`` (one per picture, or
        one for all) with the ``manipulate_image`` signature; returns PNG bytes.

        ``sources``: the pictures' own labels (one per picture, or one for all),
        which the per-label edit keeps for the labels it does not switch;
        default: see ``_source``. Exports whose ``manipulate_image`` takes no
        ``y`` are sent none."""
        images = list(images)

        def per_picture(values):
            single = values is None or isinstance(values, dict) or not hasattr(values[0], "__len__")
            return [values] * len(images) if single else list(values)

        targets, sources = per_picture(targets), per_picture(sources)
        with_source = "y" in self._image_inputs()
        instances = []
        for image, target, source in zip(images, targets, sources):
            y = self._source(target, source)
            instance = {IMAGE_INPUT: b64(image), "y_target": self._target(target, base=y)}
            if with_source:
                instance["y"] = y
            instances.append(instance)
        predictions = self.predict(instances, signature_name=IMAGE_SIGNATURE)
        return [base64.b64decode(p["b64"]) for p in predictions]

    def manipulate_image(self, png_bytes: bytes, target, source=None) -> bytes:
        """One picture: ``target`` (and ``source``, its own labels) are ``[k]``
        values in label order, or ``{label: value}``."""
        return self.manipulate_images(
            [png_bytes],
            [target] if not isinstance(target, dict) else target,
            None if source is None else ([source] if not isinstance(source, dict) else source),
        )[0]
