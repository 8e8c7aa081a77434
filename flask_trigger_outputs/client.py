"""The Trigger.dev REST client: retrieve runs, trigger tasks, sign packets.

This module is the boundary between ``requests`` and the package: every
``requests`` exception is translated here, and every error status in
:mod:`flask_trigger_outputs._api_errors`, into an exception from
:mod:`flask_trigger_outputs.errors`, raised ``from`` the original.
Messages name the run or task and what to do next, and never contain the
secret key.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from . import decoding
from ._api_errors import give_up_error, read_retry_at, should_retry, status_error
from ._retry import RetryPolicy, TransientError, call_with_retry
from .errors import ApiError, PayloadTooLargeError
from .runs import validate_run_id
from .uploads import PacketUploader

logger = logging.getLogger(__name__)

#: Base URL of Trigger.dev cloud.
DEFAULT_API_URL = "https://api.trigger.dev"

#: Serialized payloads of at least this many bytes are uploaded to object
#: storage instead of being sent inline, as ``@trigger.dev/sdk`` 4.8.3 does.
DEFAULT_OFFLOAD_THRESHOLD = 128 * 1024

#: Largest serialized payload Trigger.dev accepts for one run, in bytes.
DEFAULT_MAX_PAYLOAD_SIZE = 3 * 1024 * 1024

#: Version of ``@trigger.dev/core`` whose REST behaviour this client follows,
#: sent in the ``trigger-version`` header as the official SDK sends its own.
TRIGGER_VERSION = "4.8.3"

_USER_AGENT = "flask-trigger-outputs/0.1.0"

_TASK_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")


class _BearerAuth(requests.auth.AuthBase):
    """Send the secret key as a bearer token.

    Set as the session's ``auth`` rather than as a header so that requests
    does not replace it with ``.netrc`` credentials, and kept out of
    ``repr`` so the key does not show up in debug output.
    """

    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._secret_key}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth (secret key hidden)>"


class TriggerClient:
    """A client of the Trigger.dev REST API for one project environment.

    It keeps a pooled :class:`requests.Session` that sends the secret key to
    the API host only. Presigned storage URLs go through a separate session
    without credentials.

    Each API call is retried on connection errors, timeouts, 408, 409, 429
    and 5xx responses with jittered exponential waits, up to ``max_tries``
    attempts and ``max_time`` seconds in total. The server's
    ``x-should-retry`` header overrides that choice, and after a 429 the
    wait lasts until the ``x-ratelimit-reset`` time. All attempts of one
    call carry the same ``x-trigger-request-idempotency-key``, so a trigger
    retried after a lost response does not start a second run.

    :param secret_key: the environment's secret API key (``tr_dev_...``,
        ``tr_prod_...``).
    :param api_url: the API base URL, for a self-hosted instance or the
        emulator.
    :param branch: the preview branch to address, sent as
        ``x-trigger-branch``.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for a response.
    :param max_tries: attempts per call, the first included.
    :param max_time: time budget in seconds for all attempts of one call.
    :param offload_threshold: serialized payloads of at least this many
        bytes are uploaded to object storage before triggering.
    :param max_payload_size: larger serialized payloads raise
        :class:`~flask_trigger_outputs.errors.PayloadTooLargeError`.
    :param retry_policy: a complete retry policy that overrides
        ``max_tries`` and ``max_time``, for example one whose clock and sleep
        are driven by a test.
    :param uploader: the uploader of offloaded payloads; by default one with
        the same timeouts and retry policy.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        branch: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_tries: int = 5,
        max_time: float = 60.0,
        offload_threshold: int = DEFAULT_OFFLOAD_THRESHOLD,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        retry_policy: RetryPolicy | None = None,
        uploader: PacketUploader | None = None,
    ) -> None:
        if not isinstance(secret_key, str) or not secret_key.strip():
            raise ValueError(
                "The Trigger.dev secret key is empty. Set TRIGGER_SECRET_KEY to the"
                " secret API key of the project environment."
            )
        if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
            raise ValueError(
                f"Invalid Trigger.dev API URL {api_url!r}: expected an http or https URL."
            )

        self.api_url = api_url.rstrip("/")
        self.branch = branch
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.offload_threshold = offload_threshold
        self.max_payload_size = max_payload_size
        self.retry_policy = retry_policy or RetryPolicy(max_tries=max_tries, max_time=max_time)
        self.uploader = uploader or PacketUploader(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry_policy=self.retry_policy,
        )
        self._host = urllib.parse.urlsplit(self.api_url).netloc
        self._session = self._create_session(secret_key.strip(), branch)

    @staticmethod
    def _create_session(secret_key: str, branch: str | None) -> requests.Session:
        session = requests.Session()
        session.auth = _BearerAuth(secret_key)
        session.headers.update(
            {
                "Accept": "application/json",
                "User-Agent": f"{_USER_AGENT} {requests.utils.default_user_agent()}",
                "trigger-version": TRIGGER_VERSION,
                "x-trigger-source": "sdk",
            }
        )
        if branch:
            session.headers["x-trigger-branch"] = branch
        return session

    def __repr__(self) -> str:
        return f"<TriggerClient {self.api_url}>"

    def close(self) -> None:
        """Close the pooled connections to the API and storage hosts."""
        self._session.close()
        self.uploader.close()

    def retrieve_run(self, run_id: str) -> dict[str, Any]:
        """Retrieve a run with ``GET /api/v3/runs/{runId}``.

        The run id is validated before anything is sent.

        :param run_id: the run to retrieve.
        :return: the run as the API returns it, including ``output`` or
            ``outputPresignedUrl`` once it has finished.
        :raises InvalidRunIdError: ``run_id`` is not a run id.
        :raises RunNotFoundError: no run has this id in the key's environment.
        :raises AuthenticationError: the API rejected the secret key.
        :raises RateLimitError: the API kept responding with 429.
        :raises UpstreamUnavailableError: the API could not be reached or
            kept failing.
        :raises UpstreamTimeoutError: the API kept timing out.
        :raises ApiError: any other rejection.
        """
        run_id = validate_run_id(run_id)
        return self._request_object(
            "GET",
            f"/api/v3/runs/{run_id}",
            action=f"retrieving run {run_id!r}",
            run_id=run_id,
            is_run_lookup=True,
        )

    def trigger(
        self,
        task_id: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        """Start a run of a task with ``POST /api/v1/tasks/{taskId}/trigger``
        and return its id.

        The payload is serialized as the official SDK does (a string as
        ``text/plain``, anything else as superjson). When the serialized
        payload reaches ``offload_threshold`` bytes, it is uploaded through
        ``PUT /api/v2/packets/{filename}`` first and the run is triggered
        with a pointer to it.

        :param task_id: the task identifier, such as ``"site-crawl"``.
        :param payload: the payload; see :func:`~flask_trigger_outputs.decoding.encode_packet`
            for the types that serialize.
        :param idempotency_key: Trigger.dev returns the existing run instead
            of starting a new one when a run of this task already used the
            key. The key is sent as given. The Node SDK hashes string keys
            first, so the same string used from Node and from here names two
            different keys.
        :param tags: run tags.
        :param metadata: initial run metadata, a JSON object.
        :param options: further trigger options (``delay``, ``ttl``,
            ``queue``, ``concurrency_key``, ``max_attempts``, ...). Snake-case
            names are sent in camelCase.
        :raises ValueError: ``task_id`` is empty, too long or not printable
            ASCII.
        :raises PayloadTooLargeError: the serialized payload is larger than
            ``max_payload_size``; nothing was uploaded.
        :raises StorageError: uploading a large payload failed.
        :raises TriggerOutputsError: the API call failed; see
            :meth:`retrieve_run` for the subclasses.
        """
        if not isinstance(task_id, str) or _TASK_ID_PATTERN.fullmatch(task_id) is None:
            raise ValueError(
                f"Invalid task id {task_id!r}: expected 1 to 128 printable ASCII characters."
            )

        data, data_type = decoding.encode_packet(payload)
        size = len(data.encode("utf-8"))
        if size > self.max_payload_size:
            raise PayloadTooLargeError(
                f"The payload for task {task_id!r} is {size} bytes once serialized, larger"
                f" than the limit of {self.max_payload_size} bytes. Send a smaller payload,"
                " for example a reference to data stored elsewhere.",
                size=size,
                limit=self.max_payload_size,
                task_id=task_id,
            )

        body_options: dict[str, Any] = {_camel_case(k): v for k, v in options.items()}
        if size >= self.offload_threshold:
            data = self._offload_payload(task_id, data, data_type)
            data_type = "application/store"
        body_options["payloadType"] = data_type
        if idempotency_key is not None:
            body_options["idempotencyKey"] = idempotency_key
        if tags is not None:
            body_options["tags"] = list(tags)
        if metadata is not None:
            body_options["metadata"] = dict(metadata)

        answer = self._request_object(
            "POST",
            f"/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}/trigger",
            action=f"triggering task {task_id!r}",
            task_id=task_id,
            json_body={"payload": data, "options": body_options},
        )

        run_id = answer.get("id")
        try:
            return validate_run_id(run_id)
        except ValueError as exc:
            raise ApiError(
                f"Trigger.dev responded to the trigger of task {task_id!r} without a valid run id.",
                task_id=task_id,
            ) from exc

    def presign_upload(self, filename: str, *, task_id: str | None = None) -> tuple[str, str]:
        """Request a presigned upload URL for a packet with
        ``PUT /api/v2/packets/{filename}``.

        :param filename: the packet's path in the environment's storage,
            such as ``trigger/site-crawl/1714557600000-x1y2z3/payload.json``.
        :param task_id: the task the packet is for, for messages.
        :return: the presigned URL and the storage path to trigger with
            (the filename when the API sends no ``storagePath``).
        :raises TriggerOutputsError: the API call failed.
        """
        answer = self._request_object(
            "PUT",
            f"/api/v2/packets/{_quote_filename(filename)}",
            action=f"requesting an upload URL for {filename!r}",
            task_id=task_id,
        )
        url = answer.get("presignedUrl")
        storage_path = answer.get("storagePath") or filename
        if not isinstance(url, str) or not isinstance(storage_path, str):
            raise ApiError(
                f"Trigger.dev responded to the upload request for {filename!r} without a"
                " presigned URL.",
                task_id=task_id,
            )
        return url, storage_path

    def presign_download(self, filename: str, *, run_id: str | None = None) -> str:
        """Request a presigned download URL for a stored packet with
        ``GET /api/v1/packets/{filename}``.

        :param filename: the packet's path in the environment's storage.
        :param run_id: the run the packet belongs to, for messages.
        :raises TriggerOutputsError: the API call failed.
        """
        answer = self._request_object(
            "GET",
            f"/api/v1/packets/{_quote_filename(filename)}",
            action=f"requesting a download URL for {filename!r}",
            run_id=run_id,
        )
        url = answer.get("presignedUrl")
        if not isinstance(url, str):
            raise ApiError(
                f"Trigger.dev responded to the download request for {filename!r} without a"
                " presigned URL.",
                run_id=run_id,
            )
        return url

    def _offload_payload(self, task_id: str, data: str, data_type: str) -> str:
        """Upload a serialized payload and return the storage path to
        trigger with. The filename follows the official SDK's layout."""
        extension = "txt" if data_type == "text/plain" else "json"
        unique = f"{int(time.time() * 1000)}-{_base36(secrets.randbits(52))}"
        filename = f"trigger/{urllib.parse.quote(task_id, safe='')}/{unique}/payload.{extension}"

        url, storage_path = self.presign_upload(filename, task_id=task_id)
        self.uploader.upload(url, data.encode("utf-8"), data_type, task_id=task_id)
        logger.info(
            "Uploaded the payload of task %r (%d bytes) to object storage.",
            task_id,
            len(data.encode("utf-8")),
        )
        return storage_path

    def _request_object(
        self,
        method: str,
        path: str,
        *,
        action: str,
        run_id: str | None = None,
        task_id: str | None = None,
        json_body: Any = None,
        is_run_lookup: bool = False,
    ) -> dict[str, Any]:
        """Send one API call with retries and return its JSON object.

        :param action: what the call does, in lower case for messages, such
            as ``"retrieving run 'run_abc'"``.
        :param is_run_lookup: a 404 means the run does not exist, and raises
            :class:`~flask_trigger_outputs.errors.RunNotFoundError`.
        """
        url = self.api_url + path
        # One key for every attempt, so the server can recognise a retry.
        headers = {"x-trigger-request-idempotency-key": str(uuid.uuid4())}

        def attempt() -> requests.Response:
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=(self.connect_timeout, self.read_timeout),
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(type(exc).__name__, cause=exc) from exc
            except requests.RequestException as exc:
                raise ApiError(
                    f"Could not send the request to Trigger.dev while {action}"
                    f" ({type(exc).__name__}). Check TRIGGER_API_URL.",
                    run_id=run_id,
                    task_id=task_id,
                ) from exc

            if should_retry(response):
                retry_at = read_retry_at(response, self.retry_policy.wall_clock())
                response.close()
                raise TransientError(
                    f"HTTP {response.status_code}",
                    status_code=response.status_code,
                    retry_at=retry_at,
                )
            return response

        try:
            response = call_with_retry(
                attempt,
                policy=self.retry_policy,
                operation=action[:1].upper() + action[1:],
                run_id=run_id,
                task_id=task_id,
            )
        except TransientError as failure:
            raise give_up_error(failure, action, run_id, task_id, self._host) from (
                failure.cause or failure
            )

        if not 200 <= response.status_code < 300:
            raise status_error(response, action, run_id, task_id, is_run_lookup)

        try:
            answer = response.json()
        except ValueError as exc:
            raise ApiError(
                f"Trigger.dev responded with a body that is not JSON while {action}.",
                run_id=run_id,
                task_id=task_id,
                status_code=response.status_code,
            ) from exc
        if not isinstance(answer, dict):
            raise ApiError(
                f"Trigger.dev responded with JSON that is not an object while {action}.",
                run_id=run_id,
                task_id=task_id,
                status_code=response.status_code,
            )
        return answer


def _quote_filename(filename: str) -> str:
    """Quote a packet filename for a URL path, keeping ``/`` and existing
    percent-escapes, and reject names that could climb out of the path."""
    segments = filename.split("/")
    if not filename or any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(
            f"Invalid packet filename {filename!r}: expected a relative path without"
            " empty, '.' or '..' segments."
        )
    return urllib.parse.quote(filename, safe="/%")


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, remainder = divmod(number, 36)
        text = digits[remainder] + text
    return text or "0"
