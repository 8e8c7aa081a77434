"""The emulator: a WSGI app that responds like the Trigger.dev API and its object store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .faults import Faults, faulty_body
from .packets import JSON, StoredPacket, encode_value, render_as_json
from .render import render_run
from .runs import DEFAULT_MAX_OUTPUT_SIZE, RunRecord, RunRegistry, Task, TaskContext, new_run_id
from .stats import RecordedRequest, Stats
from .store import STORAGE_PREFIX, ObjectStore, SignatureError, s3_error_body, s3_error_code

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

#: Size above which Trigger.dev's run API returns presigned URLs instead of
#: inline data (512 KB in Trigger.dev's documentation).
DEFAULT_OFFLOAD_THRESHOLD = 512 * 1024

#: The largest trigger request body Trigger.dev accepts
#: (``TASK_PAYLOAD_MAXIMUM_SIZE``, 3 MB).
DEFAULT_MAX_PAYLOAD_SIZE = 3 * 1024 * 1024

#: Marks a :meth:`Emulator.create_run` call without an output.
NO_OUTPUT: Any = object()

_URL_MAP = Map(
    [
        Rule("/api/v3/runs/<run_id>", endpoint="retrieve", methods=["GET"]),
        Rule("/api/v1/tasks/<task_id>/trigger", endpoint="trigger", methods=["POST"]),
        Rule("/api/v2/packets/<path:filename>", endpoint="upload_url", methods=["PUT"]),
        Rule("/api/v1/packets/<path:filename>", endpoint="download_url", methods=["GET"]),
    ],
    strict_slashes=False,
    merge_slashes=False,
)


def echo(payload: Any, context: TaskContext) -> Any:
    """Return the payload unchanged; the built-in ``echo`` task."""
    return payload


class BadRequest(Exception):
    """A request the API rejects with 400 and ``{"error": message}``."""


class Emulator:
    """A local stand-in for the Trigger.dev API and its object storage.

    The object is a WSGI application. Serve it with
    :class:`~flask_trigger_outputs.emulator.EmulatorServer`, or with any WSGI
    server. It serves:

    - ``GET /api/v3/runs/{runId}``: the run, shaped like Trigger.dev's
      ``RetrieveRunResponse``.
    - ``POST /api/v1/tasks/{taskId}/trigger``: starts a run of a registered
      task on a worker thread.
    - ``PUT /api/v2/packets/{filename}`` and ``GET /api/v1/packets/{filename}``:
      presigned upload and download URLs for packets.
    - presigned object-store URLs under ``/storage/packets/``.

    :param secret_key: the API key clients must send as ``Authorization:
        Bearer <key>``; a random ``tr_dev_`` key when None.
    :param offload_threshold: packets of at least this many bytes are
        offloaded to the object store and returned as presigned URLs.
    :param url_expiry: lifetime of presigned URLs, in seconds.
    :param clock: returns the current Unix time in seconds; inject a fake one
        to expire URLs or date runs without sleeping.
    :param max_workers: runs that execute at the same time.
    :param max_payload_size: the largest trigger request body, in bytes.
    :param max_output_size: a larger task output fails the run.
    """

    def __init__(
        self,
        secret_key: str | None = None,
        *,
        offload_threshold: int = DEFAULT_OFFLOAD_THRESHOLD,
        url_expiry: float = 300.0,
        clock: Callable[[], float] = time.time,
        max_workers: int = 4,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> None:
        #: The API key the emulator accepts.
        self.secret_key = secret_key or "tr_dev_" + secrets.token_hex(12)
        self.max_payload_size = max_payload_size
        #: Base URL used for presigned URLs built outside a request (set by
        #: :class:`EmulatorServer`); inside a request the request's host is used.
        self.base_url = "http://127.0.0.1"
        self._clock = clock
        self._jwt_key = secrets.token_bytes(32)
        #: The object store behind the presigned URLs.
        self.store = ObjectStore(url_expiry=url_expiry, clock=clock)
        #: Failure controls; see :class:`~flask_trigger_outputs.emulator.faults.Faults`.
        self.faults = Faults(self.store.expire_all)
        #: Counters and the request log; see :class:`~flask_trigger_outputs.emulator.stats.Stats`.
        self.stats = Stats()
        #: The runs and their worker threads.
        self.runs = RunRegistry(
            self.store,
            offload_threshold=offload_threshold,
            clock=clock,
            max_workers=max_workers,
            max_output_size=max_output_size,
        )
        self.register_task("echo", echo)

    # -- Python API ------------------------------------------------------

    @property
    def offload_threshold(self) -> int:
        """Packets of at least this many bytes are offloaded to the store."""
        return self.runs.offload_threshold

    @offload_threshold.setter
    def offload_threshold(self, value: int) -> None:
        self.runs.offload_threshold = value

    def register_task(self, task_id: str, fn: Task) -> None:
        """Register a task.

        ``fn(payload, context)`` runs on a worker thread for every triggered
        run. ``payload`` is the decoded payload (superjson decoded to Python
        types); ``context`` is a :class:`TaskContext` for metadata updates.
        The return value becomes the output, serialized like the official
        SDK does, unless it is a :class:`StoredPacket`, which is stored
        verbatim. An exception fails the run with the exception's class name
        and message.
        """
        self.runs.register_task(task_id, fn)

    def register_tasks(self, tasks: Mapping[str, Task]) -> None:
        """Register every task of a ``{task_id: fn}`` mapping."""
        for task_id, fn in tasks.items():
            self.register_task(task_id, fn)

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> str:
        """Trigger a run from Python, as the API would, and return its id.

        The payload is serialized like the official SDK serializes it.
        Keyword options are ``idempotency_key``, ``tags``, ``metadata`` and ``ttl``.

        :raises KeyError: no task ``task_id`` is registered.
        """
        run_id, _ = self.runs.trigger(task_id, encode_value(payload), **options)
        return run_id

    def create_run(
        self,
        task_id: str = "echo",
        *,
        status: str = "COMPLETED",
        output: Any = NO_OUTPUT,
        payload: Any = None,
        error: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        offload_output: bool | None = None,
        offload_payload: bool | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Create a run directly in any status, without executing a task.

        Use it for states a task cannot reach on demand. Examples are a run
        still QUEUED, a status string Trigger.dev may add later, or a
        COMPLETED run with no output at all (leave ``output`` out). Pass a
        :class:`StoredPacket` to store a packet written by another serializer.

        :param task_id: need not be a registered task.
        :param status: any string, including unknown ones.
        :param output: the output value, encoded like a task's return value.
        :param error: ``{"name", "message", "stackTrace"}`` for failed runs.
        :param offload_output: True or False forces the output into the
            store or inline; None applies the offload threshold.
        :returns: the new run id.
        """
        now = self._clock()
        run_id = new_run_id()
        payload_packet = self.runs.store_packet(
            run_id, encode_value(payload), "payload", offload=offload_payload
        )
        output_packet = None
        if output is not NO_OUTPUT:
            output_packet = self.runs.store_packet(
                run_id, encode_value(output), "output", offload=offload_output
            )

        started = now if status not in {"QUEUED", "DELAYED", "PENDING_VERSION"} else None
        finished = (
            now
            if status in {"COMPLETED", "FAILED", "CANCELED", "CRASHED", "SYSTEM_FAILURE"}
            else None
        )
        record = RunRecord(
            id=run_id,
            task_identifier=task_id,
            status=status,
            created_at=now,
            updated_at=now,
            payload=payload_packet,
            output=output_packet,
            error=dict(error) if error is not None else None,
            metadata=dict(metadata) if metadata is not None else None,
            tags=sorted(tags),
            idempotency_key=idempotency_key,
            started_at=started,
            finished_at=finished,
            attempt_count=1 if started is not None else 0,
        )
        self.runs.add(record)
        return run_id

    def update_run(self, run_id: str, **changes: Any) -> None:
        """Change fields of a run (see :class:`RunRecord`), for example its status.

        :raises KeyError: no such run.
        """
        self.runs.update(run_id, **changes)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """Return the run as ``GET /api/v3/runs/{runId}`` would.

        :raises KeyError: no such run.
        """
        return render_run(self.runs.get(run_id), presign=self._presigner(self.base_url))

    def wait_for_run(self, run_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a run is finished and return it as the API would.

        :raises KeyError: no such run.
        :raises TimeoutError: the run did not finish within ``timeout`` seconds.
        """
        record = self.runs.wait(run_id, timeout)
        return render_run(record, presign=self._presigner(self.base_url))

    def presign(self, key: str, method: str = "GET") -> str:
        """Return a presigned URL for the object ``key`` on :attr:`base_url`."""
        return self.store.presign(self.base_url, key, method)

    def close(self) -> None:
        """Wait for running tasks to finish and stop the worker threads."""
        self.runs.shutdown()

    # -- WSGI ------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(STORAGE_PREFIX):
            kind, route = "storage", "download" if request.method == "GET" else "upload"
            response = self._guard(self._handle_storage, request)
        else:
            kind, route = "api", None
            try:
                route, arguments = _URL_MAP.bind_to_environ(environ).match()
            except NotFound:
                kind, response = "unknown", _json_error(404, "Not found")
            except MethodNotAllowed:
                kind, response = "unknown", _json_error(405, "Method not allowed")
            except HTTPException as exc:
                kind, response = "unknown", _json_error(exc.code or 400, exc.name)
            else:
                response = self._guard(self._handle_api, request, route, arguments)

        self.stats.log(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string.decode("latin-1"),
                headers={name.lower(): value for name, value in request.headers.items()},
                kind=kind,
                route=route,
                status=response.status_code,
            )
        )
        return response(environ, start_response)

    def _guard(self, handler: Callable[..., Response], *args: Any) -> Response:
        try:
            return handler(*args)
        except Exception:
            # Log the failure here; the client gets a plain JSON error, never a traceback.
            logger.exception("The emulator failed to handle a request.")
            return _json_error(500, "Internal Server Error")

    # -- API routes ------------------------------------------------------

    def _handle_api(self, request: Request, route: str, arguments: dict[str, str]) -> Response:
        self.stats.count_api_call(route)
        latency = self.faults.api_latency
        if latency:
            time.sleep(latency)

        failure = self.faults.take_api_failure(request.path)
        if failure is not None:
            return _json_response(failure.body, failure.status, failure.headers)

        if not self._authorized(request):
            return _json_error(401, "Invalid or Missing API key")

        if route == "retrieve":
            return self._retrieve(request, arguments["run_id"])
        if route == "trigger":
            return self._trigger(request, arguments["task_id"])
        if route == "upload_url":
            filename = arguments["filename"]
            body = {
                "presignedUrl": self.store.presign(_host_url(request), filename, "PUT"),
                "storagePath": filename,
            }
            return _json_response(body)
        filename = arguments["filename"]
        return _json_response(
            {"presignedUrl": self.store.presign(_host_url(request), filename, "GET")}
        )

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.secret_key.encode())

    def _retrieve(self, request: Request, run_id: str) -> Response:
        record = self.runs.find(run_id)
        if record is None:
            return _json_error(404, "Run not found")

        sign_urls = not self.faults.take_signing_failure()
        body = render_run(record, presign=self._presigner(_host_url(request)), sign_urls=sign_urls)
        return _json_response(body)

    def _trigger(self, request: Request, task_id: str) -> Response:
        # Trigger.dev checks the declared length before reading the body and
        # rejects a body without one.
        if request.content_length is None or request.content_length > self.max_payload_size:
            return _json_error(413, "Request body too large")

        raw = request.get_data(cache=False)
        if not raw:
            return _json_error(400, "Request body is empty")
        try:
            body = json.loads(raw)
        except ValueError:
            return _json_error(400, "Invalid JSON")

        try:
            options = _parse_trigger_options(body)
            payload = _payload_packet(body, options)
            metadata = _metadata(options)
        except BadRequest as exc:
            return _json_error(400, str(exc))

        if not self.runs.has_task(task_id):
            return _json_error(404, "Task not found")

        idempotency_key = options.get("idempotencyKey") or request.headers.get("idempotency-key")
        tags = options.get("tags")
        run_id, cached = self.runs.trigger(
            task_id,
            payload,
            idempotency_key=idempotency_key,
            request_key=request.headers.get("x-trigger-request-idempotency-key"),
            tags=[tags] if isinstance(tags, str) else tags,
            metadata=metadata,
            ttl=options.get("ttl") if isinstance(options.get("ttl"), str) else None,
        )
        return _json_response(
            {"id": run_id, "isCached": cached}, headers=self._public_token(run_id)
        )

    def _public_token(self, run_id: str) -> dict[str, str]:
        """Build the ``x-trigger-jwt`` headers: a read token scoped to one run."""
        claims = {"sub": "env_emulator", "pub": True, "scopes": [f"read:runs:{run_id}"]}
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({**claims, "exp": int(self._clock()) + 3600}).encode())
        signature = _b64url(
            hmac.new(self._jwt_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        return {
            "x-trigger-jwt": f"{header}.{payload}.{signature}",
            "x-trigger-jwt-claims": json.dumps(claims),
        }

    def _presigner(self, base_url: str) -> Callable[[str], str]:
        def presign(key: str) -> str:
            return self.store.presign(base_url, key, "GET")

        return presign

    # -- object store ----------------------------------------------------

    def _handle_storage(self, request: Request) -> Response:
        raw_path = _raw_path(request)
        key = unquote(raw_path[len(STORAGE_PREFIX) :])
        if request.method == "GET":
            self.stats.count_download(key)
        elif request.method == "PUT":
            self.stats.count_upload(key)
        else:
            return _s3_error(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )

        latency = self.faults.storage_latency
        if latency:
            time.sleep(latency)

        if request.method == "GET" and self.faults.take_redirect():
            location = raw_path + "?" + request.query_string.decode("latin-1")
            headers = {"Location": location, "Set-Cookie": "emulator_session=1; Path=/"}
            return Response(b"", 307, headers=headers)

        failed_status = self.faults.take_storage_failure(request.method)
        if failed_status is not None:
            code = s3_error_code(failed_status)
            return _s3_error(failed_status, code, f"Emulated storage failure ({code}).")

        if "Authorization" in request.headers:
            return _s3_error(
                403,
                "AccessDenied",
                "Only one auth mechanism allowed: a presigned URL must be sent "
                "without an Authorization header.",
            )
        if self.faults.take_bad_signature():
            return _s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            self.store.verify(request.method, raw_path, request.query_string.decode("latin-1"))
        except SignatureError as exc:
            return _s3_error(403, exc.code, exc.message)

        if request.method == "PUT":
            data = request.get_data(cache=False)
            content_type = request.headers.get("Content-Type", "application/octet-stream")
            self.store.put(key, data, content_type)
            return Response(b"", 200, headers={"ETag": _etag(data)})

        stored = self.store.get(key)
        if stored is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.", key=key)

        headers = {
            "Content-Type": stored.content_type,
            "Content-Length": str(len(stored.data)),
            "ETag": _etag(stored.data),
        }
        fault = self.faults.take_download_fault()
        if fault is None:
            return Response(stored.data, 200, headers=headers)
        body = faulty_body(stored.data, fault, request.environ.get("werkzeug.socket"))
        return Response(body, 200, headers=headers, direct_passthrough=True)


def _parse_trigger_options(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("Invalid request body: expected an object.")
    options = body.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequest("Invalid options: expected an object.")
    for name in ("payloadType", "idempotencyKey", "metadataType", "ttl"):
        if name in options and options[name] is not None and not isinstance(options[name], str):
            raise BadRequest(f"Invalid options.{name}: expected a string.")
    tags = options.get("tags")
    tags_valid = tags is None or isinstance(tags, str)
    if not tags_valid and isinstance(tags, list):
        tags_valid = all(isinstance(tag, str) for tag in tags)
    if not tags_valid:
        raise BadRequest("Invalid options.tags: expected a string or an array of strings.")
    return options


def _payload_packet(body: dict[str, Any], options: dict[str, Any]) -> StoredPacket:
    """Build the payload packet as Trigger.dev's trigger service does.

    With the default type ``application/json`` the payload is any JSON value,
    stored as its JSON text. With any other type it must be the packet data as
    a string. For ``application/store`` that string is the storage path of an
    uploaded packet.
    """
    payload_type = options.get("payloadType") or JSON
    if "payload" not in body:
        return StoredPacket(None, payload_type)
    payload = body["payload"]
    if payload_type == JSON:
        return StoredPacket(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), JSON)
    if not isinstance(payload, str):
        raise BadRequest(f"Invalid payload: a payload of type {payload_type} must be a string.")
    return StoredPacket(payload, payload_type)


def _metadata(options: dict[str, Any]) -> dict[str, Any] | None:
    metadata = options.get("metadata")
    if metadata is None:
        return None
    if isinstance(metadata, str):
        packet = StoredPacket(metadata, options.get("metadataType") or JSON)
        try:
            _, metadata = render_as_json(packet)
        except ValueError:
            raise BadRequest(
                "Invalid options.metadata: the text is not valid for its metadataType."
            ) from None
    if not isinstance(metadata, dict):
        raise BadRequest("Invalid options.metadata: expected an object.")
    return metadata


def _json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return Response(
        text, status, headers=dict(headers or {}), content_type="application/json; charset=utf-8"
    )


def _json_error(status: int, message: str) -> Response:
    return _json_response({"error": message}, status)


def _s3_error(status: int, code: str, message: str, *, key: str | None = None) -> Response:
    return Response(s3_error_body(code, message, key=key), status, content_type="application/xml")


def _raw_path(request: Request) -> str:
    """Return the request path exactly as the client sent it, still percent-encoded."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        path: str = raw.split("?", 1)[0]
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        return path
    return quote(request.path, safe="/")


def _host_url(request: Request) -> str:
    return request.host_url.rstrip("/")


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
