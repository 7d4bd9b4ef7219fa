"""The HTTP server: TF Serving REST API v1 and Open Inference Protocol v2 on aiohttp.

Routes (paths case-insensitive under ``/v1``, as in TF Serving):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    inference
    GET  /v2, /v2/health/live, /v2/health/ready
    GET  /v2/models/{m}[/versions/{v}][/ready]                   OIP metadata / readiness
    POST /v2/models/{m}[/versions/{v}]/infer                     OIP inference
    GET  /monitoring/prometheus/metrics                          counters (text format)

Every error is ``{"error": "<message>"}`` with TF Serving's status codes
(``serving.errors``); a bad request is a 4xx, never a 5xx. Inference goes
through ``serving.batching.MicroBatcher`` (worker threads), so the event loop
only parses and writes JSON. On SIGTERM/SIGINT the server stops accepting
connections, answers the requests in flight, then exits.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import signal
import threading

from aiohttp import web

from serving import protocol
from serving.batching import MicroBatcher
from serving.errors import DeadlineExceeded, InvalidArgument, NotFound, PayloadTooLarge, RequestTimeout, ServingError
from serving.signatures import DEFAULT_SIGNATURE

log = logging.getLogger("serving")

# TF Serving's REST routes (tensorflow_serving/model_servers/http_rest_api_handler.cc).
_VERSION = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
_PREDICT = re.compile(r"/v1/models/(?P<name>[^/:]+)" + _VERSION + r":(?P<method>classify|regress|predict)", re.IGNORECASE)
_STATUS = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION + r"(?P<metadata>/metadata)?", re.IGNORECASE)
_V2_MODEL = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?")
JSON = "application/json"


@dataclasses.dataclass
class ServerConfig:
    """How the server listens, batches and protects itself (see ``csvae serve --help``)."""

    host: str = "127.0.0.1"
    port: int = 8501
    batching: bool = True
    max_batch_size: int = 32
    batch_timeout_ms: float = 2.0
    workers: int = 2
    max_queue: int = 256
    max_body_bytes: int = 16 * 1024 * 1024
    timeout_s: float = 30.0
    read_timeout_s: float = 10.0
    shutdown_timeout_s: float = 30.0


def _error(err: ServingError) -> web.Response:
    return web.Response(body=protocol.dumps({"error": err.message}), status=err.status, content_type=JSON)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


class ModelServer:
    """Serves a ``serving.backends.Repository`` over HTTP.

    Args:
      repository: the loaded models.
      config: ``ServerConfig``.
    """

    def __init__(self, repository, config: ServerConfig | None = None):
        self.repository = repository
        self.config = config or ServerConfig()
        self.batcher = MicroBatcher(
            lambda key, requests: key[0].run_batch(key[1], requests),
            workers=self.config.workers,
            max_batch_size=self.config.max_batch_size,
            batch_timeout_s=self.config.batch_timeout_ms / 1000.0,
            max_queue=self.config.max_queue,
            enabled=self.config.batching,
        )
        self.draining = False
        self.in_flight = 0  # requests whose headers arrived and whose answer is not sent yet
        self._idle: asyncio.Event | None = None
        self.counts = collections.Counter()  # (api, status) -> requests
        self.app = web.Application(client_max_size=self.config.max_body_bytes)
        self.app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        """Starts listening; returns the port (useful with ``port=0``)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=self.config.shutdown_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Graceful stop: no new connections, requests in flight answered (their
        bodies still read), then connections closed and workers stopped.

        aiohttp's own cleanup stops reading from every connection at once, which
        would lose a request whose body is still arriving; so the listening
        sockets are closed first and the requests in flight awaited here.
        """
        self.draining = True
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
            # Let connections whose request headers are already buffered (the
            # process may just have been woken up) start their handlers.
            await asyncio.sleep(0.1)
            if self.in_flight:
                self._idle = asyncio.Event()
                try:
                    await asyncio.wait_for(self._idle.wait(), self.config.shutdown_timeout_s)
                except asyncio.TimeoutError:
                    log.warning("%d request(s) still running after %g s; closing", self.in_flight, self.config.shutdown_timeout_s)
            await self._runner.cleanup()
        await self.batcher.close(timeout=self.config.shutdown_timeout_s)

    async def serve_until_signal(self, on_ready=None) -> None:
        """Runs until SIGTERM or SIGINT, then stops gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        port = await self.start()
        if on_ready:
            on_ready(port)
        await stop.wait()
        log.info("signal received: finishing the requests in flight")
        await self.stop()

    # -- routing --------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        api = "other"
        self.in_flight += 1
        try:
            try:
                api, response = await self._route(request)
            except ServingError as err:
                response = _error(err)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a bug, answered as TF Serving's INTERNAL
                log.exception("unhandled error for %s %s", request.method, request.path)
                response = _error(ServingError(f"Internal: {type(err).__name__}: {err}", 500))
            if self.draining:
                response.force_close()  # the client reconnects (elsewhere) for its next request
            self.counts[(api, response.status)] += 1
            return response
        finally:
            self.in_flight -= 1
            if self._idle is not None and not self.in_flight:
                self._idle.set()

    async def _route(self, request: web.Request):
        path, method = request.path, request.method
        lowered = path.lower()
        if lowered.startswith("/v1/"):
            return "v1", await self._v1(request, path, method)
        if lowered == "/v2" or lowered.startswith("/v2/"):
            return "v2", await self._v2(request, path, method)
        if path == "/monitoring/prometheus/metrics" and method == "GET":
            return "metrics", web.Response(text=self._metrics(), content_type="text/plain")
        raise NotFound(f"Not found: {method} {path}")

    # -- TF Serving REST v1 ------------------------------------------------------------------------
    async def _v1(self, request, path, method):
        malformed = InvalidArgument(f"Malformed request: {method} {path}")
        if method == "POST" and (match := _PREDICT.fullmatch(path)):
            version = self._version(match["version"])
            if match["method"].lower() != "predict":
                await self._body(request)
                raise InvalidArgument(
                    f"Expected {match['method'].lower()} signature method_name to be tensorflow/serving/{match['method'].lower()}. "
                    "Was: tensorflow/serving/predict (this server implements :predict)"
                )
            return await self._predict(request, match["name"], version, match["label"])
        if method == "GET" and (match := _STATUS.fullmatch(path)):
            if not match["name"]:
                raise InvalidArgument("Missing model name in request.")
            version = self._version(match["version"])
            if match["metadata"]:
                servable = self.repository.get(match["name"], version, match["label"])
                return _json(protocol.metadata_response(servable.name, servable.version, servable.signatures))
            return _json(protocol.status_response(self._status_versions(match["name"], version, match["label"])))
        raise malformed

    @staticmethod
    def _version(text):
        if text is None:
            return None
        if len(text) > 19 or int(text) >= 1 << 63:  # TF Serving's versions are int64
            raise InvalidArgument(f"Failed to convert version: {text} to numeric.")
        return int(text)

    def _status_versions(self, name, version, label):
        versions = self.repository.versions(name)
        if label is not None:
            self.repository.get(name, label=label)  # raises: no labels are configured
        if version is None:
            return versions
        if version not in versions:
            raise NotFound(f"Could not find version {version} of model {name}")
        return [version]

    async def _predict(self, request, name, version, label):
        body = await self._body(request)
        document = protocol.parse_json(body)
        servable = self.repository.get(name, version, label)
        signature = protocol.find_signature(servable.signatures, protocol.signature_name(document))
        parsed = protocol.parse_predict(document, signature, max_rows=self.config.max_batch_size)
        outputs = await self._infer(servable, parsed)
        return _json(protocol.predict_response(parsed, outputs))

    # -- Open Inference Protocol v2 -------------------------------------------------------------------
    async def _v2(self, request, path, method):
        lowered = path.rstrip("/").lower()
        if method == "GET" and lowered == "/v2":
            import keras_csvae

            return _json(protocol.dumps({"name": "keras-csvae", "version": keras_csvae.__version__, "extensions": []}))
        if method == "GET" and lowered == "/v2/health/live":
            return _json(protocol.dumps({"live": True}))
        if method == "GET" and lowered == "/v2/health/ready":
            ready = not self.draining
            return _json(protocol.dumps({"ready": ready}), status=200 if ready else 503)
        match = _V2_MODEL.fullmatch(path.rstrip("/"))
        if not match:
            raise NotFound(f"Not found: {method} {path}")
        name, tail = match["name"], match["tail"]
        version = None
        if match["version"] is not None:
            if not match["version"].isdigit() or len(match["version"]) > 19 or int(match["version"]) >= 1 << 63:
                raise InvalidArgument(f"Version {match['version']!r} is not an integer")
            version = int(match["version"])
        servable = self.repository.get(name, version)
        if tail == "/infer":
            if method != "POST":
                raise InvalidArgument(f"Malformed request: {method} {path} (infer takes POST)")
            document = protocol.parse_json(await self._body(request))
            signature = protocol.find_signature(servable.signatures, protocol.v2_signature_name(document))
            parsed = protocol.parse_infer(document, signature, name, max_rows=self.config.max_batch_size)
            outputs = await self._infer(servable, parsed)
            return _json(protocol.infer_response(name, servable.version, parsed, outputs))
        if method != "GET":
            raise InvalidArgument(f"Malformed request: {method} {path}")
        if tail == "/ready":
            ready = not self.draining
            return _json(protocol.dumps({"name": name, "ready": ready}), status=200 if ready else 503)
        signature = servable.signatures[DEFAULT_SIGNATURE]
        return _json(protocol.v2_model_metadata(name, self.repository.versions(name), servable.platform, signature))

    # -- shared ---------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        """The request body, within ``max_body_bytes`` (413) and ``read_timeout_s`` (408)."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"Request body of {request.content_length} bytes is larger than the limit of {limit} bytes")
        try:
            return await asyncio.wait_for(request.read(), self.config.read_timeout_s)
        except web.HTTPRequestEntityTooLarge as err:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes") from err
        except asyncio.TimeoutError as err:
            raise RequestTimeout(f"The request body did not arrive within {self.config.read_timeout_s:g} s") from err

    async def _infer(self, servable, parsed: protocol.Request) -> dict:
        """Runs one parsed request through the batcher, within ``timeout_s`` (504)."""
        shapes = tuple((name, array.shape[1:]) for name, array in sorted(parsed.inputs.items()))
        key = (servable, parsed.signature.name, shapes)
        try:
            return await asyncio.wait_for(self.batcher.submit(key, parsed.inputs, parsed.rows), self.config.timeout_s)
        except asyncio.TimeoutError as err:
            raise DeadlineExceeded(f"Deadline exceeded: no answer within {self.config.timeout_s:g} s") from err

    def _metrics(self) -> str:
        stats = self.batcher.stats
        lines = [
            "# TYPE csvae_serving_requests_total counter",
            *(f'csvae_serving_requests_total{{api="{api}",code="{code}"}} {n}' for (api, code), n in sorted(self.counts.items())),
            "# TYPE csvae_serving_batches_total counter",
            f"csvae_serving_batches_total {stats.batches}",
            "# TYPE csvae_serving_batched_requests_total counter",
            f"csvae_serving_batched_requests_total {stats.requests}",
            "# TYPE csvae_serving_batched_rows_total counter",
            f"csvae_serving_batched_rows_total {stats.rows}",
            "# TYPE csvae_serving_queue_full_total counter",
            f"csvae_serving_queue_full_total {stats.rejected_queue_full}",
            "# TYPE csvae_serving_in_flight gauge",
            f"csvae_serving_in_flight {self.in_flight}",  # this request included
            "# TYPE csvae_serving_queue_waiting gauge",
            f"csvae_serving_queue_waiting {self.batcher.waiting}",
        ]
        return "\n".join(lines) + "\n"


class ServerThread:
    """A ``ModelServer`` on its own event loop in a background thread (tests, notebooks).

    Example:
      >>> with ServerThread(repository, ServerConfig(port=0)) as server:
      ...     requests.get(server.url + "/v1/models/csvae")
    """

    def __init__(self, repository, config: ServerConfig | None = None):
        self.server = ModelServer(repository, config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="model-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.server.config.host}:{self.server.port}"

    def call(self, coroutine, timeout: float = 60.0):
        """Runs ``coroutine`` on the server's loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self) -> "ServerThread":
        self._thread.start()
        self.call(self.server.start())
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _shutdown(self) -> None:
        await self.server.stop()
        # Connections aiohttp still tracks (a client that never closed) hold tasks.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run(repository, config: ServerConfig, announce=print) -> None:
    """Serves ``repository`` until SIGTERM/SIGINT (the ``csvae serve`` main loop)."""
    server = ModelServer(repository, config)

    def ready(port):
        names = ", ".join(f"{name} (versions {', '.join(map(str, sorted(v)))})" for name, v in repository.models.items())
        batching = f"on: max {config.max_batch_size} rows, {config.batch_timeout_ms:g} ms" if config.batching else "off"
        announce(
            f"Serving {names} with {repository.platform} on http://{config.host}:{port} "
            f"(TF Serving REST /v1, Open Inference Protocol /v2; batching {batching})"
        )

    asyncio.run(server.serve_until_signal(on_ready=ready))
    announce("Stopped.")
