"""What every backend shares: a servable's signatures as ``Pipeline``s, batched
runs of requests, and the pictures clients send.

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
from collections.abc import Callable

import numpy as np

from serving.errors import Internal, InvalidArgument, ServingError
from serving.runtime.contract import IMAGE_INPUT
from serving.runtime.images import ImageError, decode_picture, encode_png
from serving.signatures import FLOAT32, STRING, Signature

log = logging.getLogger("serving")


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
            for _, inputs in prepared:
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
                    inputs[spec.name] = np.array([encode_png(np.zeros(self.image_shape, np.float32))], object)
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


def decode_request_picture(i: int, item, image_shape) -> tuple[np.ndarray, bool]:
    """Picture ``i`` of a request -> ``decode_picture``'s ``(pixels, as_stored)``; ``InvalidArgument`` names it."""
    try:
        return decode_picture(picture_bytes(item), image_shape)
    except ImageError as err:
        raise InvalidArgument(f"{IMAGE_INPUT}[{i}]: {err}") from err
