"""The HTTP server: TF Serving REST API v1 and Open Inference Protocol v2 on aiohttp.

Routes (paths case-insensitive under ``/v1``, as in TF Serving):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    inference
    GET  /v2, /v2/health/live, /v2/health/ready
    GET  /v2/models/{m}[/versions/{v}][/ready]                   OIP metadata / readiness
    POST /v2/models/{m}[/versions/{v}]/infer                     OIP inference
    POST /v2/repository/index                                    every v2 model (one per signature)
    GET  /monitoring/prometheus/metrics                          counters (prometheus_client text format)

Every error is ``{"error": "<message>"}`` with TF Serving's status codes
(``serving.errors``); a bad request is a 4xx, never a 5xx. Inference goes
through ``serving.batching.MicroBatcher`` (worker threads), so the event loop
only parses and writes JSON. On SIGTERM/SIGINT the server stops accepting
connections, answers the requests in flight, then exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import re
import signal
import threading

import prometheus_client
from aiohttp import web

from serving import protocol
from serving.batching import MicroBatcher
from serving.errors import DeadlineExceeded, InvalidArgument, NotFound, PayloadTooLarge, RequestTimeout, ServingError
from serving.runtime.contract import SERVING_DEFAULT

log = logging.getLogger("serving")

# TF Serving's REST routes (tensorflow_serving/model_servers/http_rest_api_handler.cc).
_VERSION = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
_PREDICT = re.compile(
    r"/v1/models/(?P<name>[^/:]+)" + _VERSION + r":(?P<method>classify|regress|predict)", re.IGNORECASE
)
_STATUS = re.compile(r"/v1/models(?:/(?P<name>[^/:]+))?" + _VERSION + r"(?P<metadata>/metadata)?", re.IGNORECASE)
_V2_MODEL = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?")
JSON = "application/json"
# A signature's v2 model name is "<model>.<signature>": "." is one of the
# characters urllib.parse.quote (tritonclient) and httpx (KServe) leave as they
# are (no percent-escapes in URLs or logs), and no signature name contains it.
V2_SEPARATOR = "."
PACKAGE = "keras-csvae"  # the server's name in the OIP v2 server metadata


def package_version() -> str:
    """The installed ``keras-csvae`` distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def api_of(path: str) -> str:
    """The ``api`` label of a request path: ``v1``, ``v2``, ``metrics`` or ``other``."""
    lowered = path.lower()
    if lowered.startswith("/v1/"):
        return "v1"
    if lowered == "/v2" or lowered.startswith("/v2/"):
        return "v2"
    if path == "/monitoring/prometheus/metrics":
        return "metrics"
    return "other"


def v2_name(model: str, signature: str) -> str:
    """The Open Inference Protocol name of ``signature`` of ``model``: the plain
    model name for ``serving_default``, else ``model.signature``."""
    return model if signature == SERVING_DEFAULT else f"{model}{V2_SEPARATOR}{signature}"


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
        # A registry per server (tests run several in one process).
        self.metrics = prometheus_client.CollectorRegistry(auto_describe=False)
        self.requests_total = prometheus_client.Counter(
            "csvae_serving_requests",
            "HTTP requests answered, by API and status code",
            ["api", "code"],
            registry=self.metrics,
        )
        self.metrics.register(_ServerCollector(self))
        self.app = web.Application(client_max_size=self.config.max_body_bytes)
        self.app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        """Starts listening; returns the port (useful with ``port=0``)."""
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=self.config.shutdown_timeout_s
        )
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
                except TimeoutError:
                    log.warning(
                        "%d request(s) still running after %g s; closing",
                        self.in_flight,
                        self.config.shutdown_timeout_s,
                    )
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
        # The label comes from the path alone, before routing: a request that
        # fails to route is still counted under the API it was meant for.
        api = api_of(request.path)
        self.in_flight += 1
        try:
            try:
                response = await self._route(request)
            except ServingError as err:
                response = _error(err)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - a bug, answered as TF Serving's INTERNAL
                log.exception("unhandled error for %s %s", request.method, request.path)
                response = _error(ServingError(f"Internal: {type(err).__name__}: {err}", 500))
            if self.draining:
                response.force_close()  # the client reconnects (elsewhere) for its next request
            self.requests_total.labels(api=api, code=str(response.status)).inc()
            return response
        finally:
            self.in_flight -= 1
            if self._idle is not None and not self.in_flight:
                self._idle.set()

    @property
    def counts(self) -> dict[tuple[str, int], int]:
        """Requests answered so far: ``{(api, status): n}`` (the metrics' counter)."""
        counts = {}
        for metric in self.requests_total.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["api"], int(sample.labels["code"]))] = int(sample.value)
        return counts

    async def _route(self, request: web.Request):
        path, method = request.path, request.method
        api = api_of(path)
        if api == "v1":
            return await self._v1(request, path, method)
        if api == "v2":
            return await self._v2(request, path, method)
        if api == "metrics" and method == "GET":
            return web.Response(
                body=prometheus_client.generate_latest(self.metrics),
                headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
            )
        raise NotFound(f"Not found: {method} {path}")

    # -- TF Serving REST v1 ------------------------------------------------------------------------
    async def _v1(self, request, path, method):
        malformed = InvalidArgument(f"Malformed request: {method} {path}")
        if method == "POST" and (match := _PREDICT.fullmatch(path)):
            version = self._version(match["version"])
            if match["method"].lower() != "predict":
                await self._body(request)
                raise InvalidArgument(
                    f"Expected {match['method'].lower()} signature method_name to be "
                    f"tensorflow/serving/{match['method'].lower()}. "
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
    def _v2_model(self, name: str) -> tuple[str, str | None]:
        """A v2 model name -> ``(served model, signature)``: ``csvae`` is the model
        (its default signature unless the request names another), ``csvae.encode``
        its ``encode`` signature. 404 for a name that is neither."""
        if name in self.repository.models:
            return name, None
        for model in sorted(self.repository.models, key=len, reverse=True):  # the longest model name that prefixes it
            if name.startswith(model + V2_SEPARATOR):
                signature = name[len(model) + len(V2_SEPARATOR) :]
                if any(signature in s.signatures for s in self.repository.models[model].values()):
                    return model, signature
                break
        raise NotFound(
            f"Model {name!r} is not served (v2 models: {', '.join(sorted({n for n, _, _ in self._v2_entries()}))})"
        )

    def _v2_entries(self) -> list[tuple[str, int, bool]]:
        """``(v2 name, version, ready)`` of every signature of every served version."""
        ready = not self.draining
        return sorted(
            (v2_name(model, signature), version, ready)
            for model, versions in self.repository.models.items()
            for version, servable in versions.items()
            for signature in servable.signatures
        )

    async def _v2(self, request, path, method):
        lowered = path.rstrip("/").lower()
        if method == "GET" and lowered == "/v2":
            return _json(
                protocol.dumps(
                    {"name": PACKAGE, "version": package_version(), "extensions": list(protocol.V2_EXTENSIONS)}
                )
            )
        if method == "GET" and lowered == "/v2/health/live":
            return _json(protocol.dumps({"live": True}))
        if method == "GET" and lowered == "/v2/health/ready":
            ready = not self.draining
            return _json(protocol.dumps({"ready": ready}), status=200 if ready else 503)
        if lowered == "/v2/repository/index":
            if method != "POST":
                raise InvalidArgument(f"Malformed request: {method} {path} (the repository index takes POST)")
            body = await self._body(request)
            document = protocol.parse_json(body) if body.strip() else {}  # tritonclient sends an empty body
            return _json(protocol.repository_index(self._v2_entries(), document))
        if lowered.startswith("/v2/repository/"):
            await self._body(request)
            raise InvalidArgument(
                "Model control is not supported: every signature of the export is loaded when the server starts"
            )
        match = _V2_MODEL.fullmatch(path.rstrip("/"))
        if not match:
            raise NotFound(f"Not found: {method} {path}")
        name, tail = match["name"], match["tail"]
        version = None
        if match["version"] is not None:
            if not match["version"].isdigit() or len(match["version"]) > 19 or int(match["version"]) >= 1 << 63:
                raise InvalidArgument(f"Version {match['version']!r} is not an integer")
            version = int(match["version"])
        model, signature_name = self._v2_model(name)
        servable = self.repository.get(model, version)
        if signature_name is not None and signature_name not in servable.signatures:
            raise NotFound(f"Version {servable.version} of model {model} has no signature {signature_name!r}")
        if tail == "/infer":
            if method != "POST":
                raise InvalidArgument(f"Malformed request: {method} {path} (infer takes POST)")
            body = protocol.split_infer_body(await self._body(request), request.headers.get(protocol.HEADER_LENGTH))
            asked = protocol.v2_signature_name(body.document)
            if signature_name is not None and asked is not None and asked != signature_name:
                raise InvalidArgument(
                    f"Model {name!r} is signature {signature_name!r}; 'parameters.signature_name' says {asked!r}"
                )
            signature = protocol.find_signature(servable.signatures, signature_name or asked or SERVING_DEFAULT)
            parsed = protocol.parse_infer(body, signature, name, max_rows=self.config.max_batch_size)
            outputs = await self._infer(servable, parsed)
            answer, header_length = protocol.infer_response(name, servable.version, parsed, outputs)
            if header_length is None:
                return _json(answer)
            return web.Response(
                body=answer,
                content_type="application/octet-stream",
                headers={protocol.HEADER_LENGTH: str(header_length)},
            )
        if method != "GET":
            raise InvalidArgument(f"Malformed request: {method} {path}")
        if tail == "/ready":
            ready = not self.draining
            return _json(protocol.dumps({"name": name, "ready": ready}), status=200 if ready else 503)
        signature = servable.signatures[signature_name or SERVING_DEFAULT]
        versions = [v for v, s in sorted(self.repository.models[model].items()) if signature.name in s.signatures]
        return _json(protocol.v2_model_metadata(name, versions, servable.platform, signature))

    # -- shared ---------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        """The request body, within ``max_body_bytes`` (413) and ``read_timeout_s`` (408)."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"Request body of {request.content_length} bytes is larger than the limit of {limit} bytes"
            )
        try:
            return await asyncio.wait_for(request.read(), self.config.read_timeout_s)
        except web.HTTPRequestEntityTooLarge as err:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes") from err
        except TimeoutError as err:
            raise RequestTimeout(f"The request body did not arrive within {self.config.read_timeout_s:g} s") from err

    async def _infer(self, servable, parsed: protocol.Request) -> dict:
        """Runs one parsed request through the batcher, within ``timeout_s`` (504)."""
        shapes = tuple((name, array.shape[1:]) for name, array in sorted(parsed.inputs.items()))
        key = (servable, parsed.signature.name, shapes)
        try:
            return await asyncio.wait_for(self.batcher.submit(key, parsed.inputs, parsed.rows), self.config.timeout_s)
        except TimeoutError as err:
            raise DeadlineExceeded(f"Deadline exceeded: no answer within {self.config.timeout_s:g} s") from err


class _ServerCollector:
    """The batcher's counters and the server's gauges, read when Prometheus scrapes."""

    def __init__(self, server: ModelServer):
        self.server = server

    def describe(self):
        return []  # nothing to check at registration; collect() is cheap

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats, server = self.server.batcher.stats, self.server
        for name, documentation, value in (
            ("csvae_serving_batches", "Model calls made by the micro-batcher", stats.batches),
            ("csvae_serving_batched_requests", "Requests that went through the micro-batcher", stats.requests),
            ("csvae_serving_batched_rows", "Rows (examples) computed by the micro-batcher", stats.rows),
            (
                "csvae_serving_queue_full",
                "Requests refused because the queue was full (503)",
                stats.rejected_queue_full,
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=value)
        yield GaugeMetricFamily(
            "csvae_serving_in_flight", "Requests being handled, this scrape included", value=server.in_flight
        )
        yield GaugeMetricFamily(
            "csvae_serving_queue_waiting", "Requests waiting for a worker", value=server.batcher.waiting
        )


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

    def start(self) -> ServerThread:
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
        names = ", ".join(
            f"{name} (versions {', '.join(map(str, sorted(v)))})" for name, v in repository.models.items()
        )
        batching = f"on: max {config.max_batch_size} rows, {config.batch_timeout_ms:g} ms" if config.batching else "off"
        announce(
            f"Serving {names} with {repository.platform} on http://{config.host}:{port} "
            f"(TF Serving REST /v1, Open Inference Protocol /v2; batching {batching})"
        )

    asyncio.run(server.serve_until_signal(on_ready=ready))
    announce("Stopped.")
