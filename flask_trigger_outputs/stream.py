"""Responses that send packet bytes without decoding them.

Two kinds of response live here:

- :func:`json_response_with_output` builds a route's JSON body around an
  output that is already serialized (a cached
  :class:`~flask_trigger_outputs.cached_packet.CachedPacket`'s ``json_body``), so a
  cache hit copies bytes instead of decoding and serializing megabytes.
- :func:`packet_response` relays the stored packet as Trigger.dev stored it,
  chunk by chunk and with its original ``Content-Type``, for clients that
  decode superjson themselves. Memory per request is bounded by the chunk
  size. In redirect mode it responds 307 with a fresh presigned URL instead,
  so the bytes never pass through the app.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from flask import Response, current_app, jsonify, request

from .cached_packet import dump_json
from .request_body import InvalidRequestError
from .runs import Run, find_packet
from .storage import redact_url

if TYPE_CHECKING:
    from .cache_stats import CacheStats
    from .cached_packet import CachedPacket
    from .reader import RunReader

logger = logging.getLogger(__name__)

#: Size of the pieces relayed to the client, in bytes.
DEFAULT_CHUNK_SIZE = 64 * 1024

#: Media type sent when the storage host gives none; the official SDK
#: assumes the same.
DEFAULT_DATA_TYPE = "application/json"

PacketKind = Literal["output", "payload"]

#: Values of the ``format`` query parameter of the GET routes: ``json``
#: (the default) returns the run as JSON, ``raw`` relays the stored output
#: packet, ``redirect`` responds 307 to a presigned URL of it.
OUTPUT_FORMATS = ("json", "raw", "redirect")


def read_output_format(*, allow_redirect: bool) -> str:
    """Read the ``format`` query parameter of the current request.

    :param allow_redirect: whether ``redirect`` is accepted. It is off by
        default because the response carries a presigned URL, signature
        included, to the client.
    :raises InvalidRequestError: if the value is not one of the accepted
        :data:`OUTPUT_FORMATS` or is given more than once.
    """
    accepted = (
        OUTPUT_FORMATS if allow_redirect else tuple(f for f in OUTPUT_FORMATS if f != "redirect")
    )
    values = request.args.getlist("format")
    if not values:
        return "json"
    if len(values) > 1 or values[0] not in accepted:
        raise InvalidRequestError(
            f"Invalid format {', '.join(repr(v) for v in values)}: expected one of"
            f" {', '.join(accepted)}, once.",
            field="format",
        )
    return values[0]


def json_response(body: Mapping[str, Any], output_json: bytes | None = None) -> Response:
    """Build a JSON response of ``body``, with ``output_json`` inserted as its
    ``output`` field when it is given; see :func:`json_response_with_output`."""
    if output_json is None:
        return jsonify(dict(body))
    return json_response_with_output(body, output_json)


def json_response_with_output(
    body: Mapping[str, Any],
    output_json: bytes,
    *,
    key: str = "output",
    status: int = 200,
) -> Response:
    """Build a JSON response from ``body`` with ``output_json`` inserted,
    as is, as the value of ``key``.

    ``body`` is serialized with the app's JSON provider. Only that small
    outer object is serialized per request. The output bytes are copied once
    into the response body, which costs far less than decoding and
    serializing them, and a body in one piece is sent faster than three
    pieces written one after another.

    :param body: the other fields of the response. Must not contain ``key``.
    :param output_json: UTF-8 JSON text of the value.
    :param key: the field that contains the value.
    :param status: the HTTP status.
    :raises ValueError: if ``body`` already contains ``key``.
    """
    if key in body:
        raise ValueError(
            f"The response body already contains {key!r}. Remove it to insert the output."
        )

    # Compact, like jsonify outside debug mode, so a poll reads the same
    # whether its output came from the cache or not.
    outer = current_app.json.dumps(dict(body), separators=(",", ":")).encode("utf-8")
    separator = b"," if len(body) else b""
    head = outer[:-1] + separator + current_app.json.dumps(key).encode("utf-8") + b":"
    data = b"".join((head, output_json, b"}\n"))

    return Response(data, status=status, mimetype="application/json")


def packet_response(
    run: Run,
    kind: PacketKind,
    *,
    reader: RunReader,
    cached: CachedPacket | None = None,
    redirect: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Response:
    """Build a response with a run's stored output or payload, byte for byte.

    The body is the packet exactly as stored, with its ``Content-Type``
    (``application/super+json`` for most outputs written by the official
    SDK). A packet already in the cache is sent from memory without any
    request. An offloaded packet is streamed from the storage host in pieces
    of ``chunk_size`` bytes, so a request keeps about one piece in memory.
    An inline packet arrives from the API already decoded to its JSON form,
    so it is sent as ``application/json`` text of that form.

    When the storage host rejects the presigned URL in ``run`` (it expired),
    :meth:`RunReader.open_packet` retrieves the run once more for a fresh
    one.

    :param run: the run, as retrieved by the caller, which has already
        checked that the request may read it.
    :param kind: ``"output"`` or ``"payload"``.
    :param reader: opens the presigned URL and counts the download in its
        cache's counters.
    :param cached: the packet's cache entry, when the caller has one.
    :param redirect: respond ``307 Temporary Redirect`` to the presigned URL
        in ``run`` instead of relaying the bytes. The caller must have
        retrieved ``run`` just now (see :meth:`RunReader.refresh_run`), since
        the URL of a cached run may have expired. Inline and cached packets
        are sent directly, since there is no stored object to point to or
        no need to.
    :param chunk_size: bytes per relayed piece.
    :raises RunNotFinishedError: if the output of an unfinished run is
        requested.
    :raises RunFailedError: if the output of a run that did not succeed is
        requested.
    :raises OutputUnavailableError: if the run carries neither inline data
        nor a presigned URL.
    :raises StorageError: if the download cannot be opened.
    """
    if kind == "output":
        reader.require_success(run)

    if cached is not None:
        return _bytes_response(cached.data, cached.data_type)

    source = find_packet(run.raw, kind)
    if source.inline:
        return _bytes_response(dump_json(source.value, run_id=run.id), DEFAULT_DATA_TYPE)

    url = source.presigned_url
    if redirect and url is not None:
        logger.debug("Redirecting to the %s of run %r at %s.", kind, run.id, redact_url(url))
        return Response(status=307, headers={"Location": url, "Cache-Control": "no-store"})

    opened, _ = reader.open_packet(
        run,
        kind,
        lambda url: reader.downloader.stream(url, run_id=run.id, chunk_size=chunk_size),
    )
    chunks = opened.chunks

    # The first piece is read before the response starts, so a download
    # that fails before any byte arrives gets the route's JSON error
    # response instead of a 500 from the server in the middle of a stream.
    try:
        first = next(chunks, b"")
    except BaseException:
        _close(chunks)
        raise

    stats = reader.cache.stats if reader.cache is not None else None
    body = _counted(_prepend(first, chunks), stats)
    response = Response(body, mimetype=None, direct_passthrough=True)
    response.headers["Content-Type"] = opened.content_type or DEFAULT_DATA_TYPE
    response.headers["Cache-Control"] = "no-store"
    # With the length announced, a client can tell a relay cut short by a
    # storage failure from a complete body, even over HTTP/1.0.
    if opened.content_length is not None:
        response.headers["Content-Length"] = str(opened.content_length)
    return response


def _bytes_response(data: bytes, data_type: str) -> Response:
    response = Response(data, mimetype=None)
    response.headers["Content-Type"] = data_type or DEFAULT_DATA_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _prepend(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``first`` and then ``chunks``, and close ``chunks`` when closed."""
    try:
        yield first
        yield from chunks
    finally:
        _close(chunks)


def _counted(chunks: Iterator[bytes], stats: CacheStats | None) -> Iterable[bytes]:
    """Pass ``chunks`` through and count one download once they are sent."""
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if stats is not None:
        stats.record_download(size)
