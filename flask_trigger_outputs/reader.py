"""Read a run's status, output and payload, inline or offloaded.

:class:`RunReader` puts the pieces together: it retrieves the run through
the :class:`~flask_trigger_outputs.client.TriggerClient`, decides from the
run what to return or raise, downloads an offloaded packet through the
:class:`~flask_trigger_outputs.packets.PacketDownloader` (asking the API for
a fresh URL once if the first one has expired) and decodes it.

Inline and offloaded data
-------------------------

Trigger.dev returns a small output inline, already reduced by its
``parsePacketAsJson`` to a JSON form without types: a date is an ISO-8601
string, a ``Map`` a list of pairs, a ``Set`` a list. A large output comes as
a presigned URL to the stored packet, which decodes to typed Python values
(timezone-aware datetimes, ``bytes``, ...). With ``as_json=True`` both give
the same JSON form. With ``as_json=False`` (the default of
:meth:`RunReader.get_output`) an offloaded output is typed, but an inline
output can only be returned in its JSON form, since the API never sends
the typed packet.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import decoding
from .cached_packet import CachedPacket, dump_json
from .client import TriggerClient
from .errors import (
    OutputUnavailableError,
    RunFailedError,
    RunNotFinishedError,
    StorageError,
)
from .packets import ExpiredUrlError, Packet, PacketDownloader
from .runs import Run, find_packet, validate_run_id

if TYPE_CHECKING:
    from .cache import OutputCache

logger = logging.getLogger(__name__)

PacketKind = Literal["output", "payload"]

T = TypeVar("T")

# Maximum length of the part of a run's error message quoted in a RunFailedError.
_ERROR_MESSAGE_LENGTH = 500


@dataclass(frozen=True)
class LoadedPacket:
    """A decoded output or payload with its size and origin."""

    #: The decoded value.
    value: Any
    #: Size in bytes of the downloaded packet, or of the JSON form of an
    #: inline value (the API does not send the stored packet itself).
    size: int
    #: Whether the value was downloaded from a presigned URL.
    offloaded: bool


@dataclass(frozen=True)
class RunResult:
    """A run with its output, as the blueprint's routes need it.

    ``output`` is only meaningful when ``has_output`` is true, because
    ``None`` is itself a valid output. ``output_size`` and
    ``output_offloaded`` are ``None`` when the output was not loaded.
    """

    #: The run, with its status, metadata and error.
    run: Run
    #: The output, in the form requested from :meth:`RunReader.get_result`.
    output: Any = None
    #: Whether ``output`` contains the run's output.
    has_output: bool = False
    #: Size of the output in bytes; see :attr:`LoadedPacket.size`.
    output_size: int | None = None
    #: Whether the output was offloaded to object storage.
    output_offloaded: bool | None = None
    #: The output's JSON form as UTF-8 JSON text, when it was taken from a
    #: :class:`~flask_trigger_outputs.cached_packet.CachedPacket` and can be sent as
    #: is. ``output`` is not filled in then, so nothing is decoded.
    output_json: bytes | None = None


@dataclass(frozen=True)
class _StoredRun:
    """A retrieved run as the cache keeps it: the API response as JSON text.

    Every read builds its own :class:`Run` from the text, so a caller that
    changes its run's ``metadata`` or ``raw`` changes no other caller's.
    Parsing the few kilobytes of a run costs microseconds.
    """

    body: bytes
    #: Whether the run may be kept for the cache's TTL: it has finished and,
    #: if it succeeded, carries its output or a URL for it. A run whose URL
    #: the server failed to sign is not kept, so the next read retries.
    keep: bool

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> _StoredRun:
        run = Run.from_api(raw)
        keep = run.is_finished and (run.output.available or not run.is_success)
        return cls(body=json.dumps(raw).encode("ascii"), keep=keep)

    @property
    def nbytes(self) -> int:
        return sys.getsizeof(self.body) + 100  # the instance and its attributes

    def to_run(self) -> Run:
        return Run.from_api(json.loads(self.body))


class RunReader:
    """Retrieve runs and read their outputs and payloads.

    :param client: the API client.
    :param downloader: the downloader of presigned URLs.
    :param cache: a cache of finished runs and their packets. With a
        cache, a finished run and its packets are fetched once and then
        served without any request. Concurrent reads of one run share one
        API call and one download. Polls of an unfinished run within the
        cache's coalescing window share one API call.
    """

    def __init__(
        self,
        client: TriggerClient,
        downloader: PacketDownloader,
        cache: OutputCache | None = None,
    ) -> None:
        self.client = client
        self.downloader = downloader
        self.cache = cache

    def get_run(self, run_id: str) -> Run:
        """Retrieve a run's status, metadata and error, without downloading
        its output or payload.

        :raises InvalidRunIdError: ``run_id`` is not a run id; nothing was sent.
        :raises TriggerOutputsError: the API call failed; see
            :meth:`TriggerClient.retrieve_run`.
        """
        cache = self.cache
        if cache is None:
            return Run.from_api(self.client.retrieve_run(run_id))

        run_id = validate_run_id(run_id)
        key = cache.key(run_id, "run")

        def retrieve() -> _StoredRun:
            return cache.coalesce(
                key,
                lambda: _StoredRun.from_api(self.client.retrieve_run(run_id)),
                size=lambda stored: stored.nbytes,
            )

        # A finished run never changes, so it is kept and later reads send
        # no request. The presigned URLs it contains may expire meanwhile, so
        # open_packet then requests fresh ones.
        stored = cache.get_or_load(
            key, retrieve, size=lambda stored: stored.nbytes, store=lambda stored: stored.keep
        )
        return stored.to_run()

    def refresh_run(self, run_id: str) -> Run:
        """Retrieve a run from the API even when it is cached, for presigned
        URLs signed just now, and replace the cached run with it.

        :raises InvalidRunIdError: ``run_id`` is not a run id; nothing was sent.
        :raises TriggerOutputsError: the API call failed.
        """
        stored = _StoredRun.from_api(self.client.retrieve_run(run_id))
        run = stored.to_run()
        if self.cache is not None and stored.keep:
            self.cache.put(self.cache.key(run.id, "run"), stored, stored.nbytes)
        return run

    def get_output(self, run_id: str, *, as_json: bool = False) -> Any:
        """Return the output of a run that completed successfully.

        An offloaded output is downloaded and decoded: typed Python values by
        default, its JSON form with ``as_json=True``. An output returned
        inline is always in its JSON form (dates as ISO-8601 strings, maps as
        lists of pairs), because the API sends no more than that. The module
        documentation explains why.

        :param run_id: the run to read.
        :param as_json: return the JSON form, which is the same whether the
            output was inline or offloaded.
        :raises RunNotFinishedError: the run is still queued, executing or
            waiting. Poll again later.
        :raises RunFailedError: the run ended without success (failed,
            crashed, canceled, expired, timed out); the error carries the
            run's error name and message.
        :raises OutputUnavailableError: the run completed but the API sent
            neither the output nor a URL for it.
        :raises StorageError: the download failed, also after a fresh URL.
        :raises OutputTooLargeError: the stored output is larger than the
            downloader's maximum size.
        :raises PacketDecodeError: the stored bytes do not match their type.
        :raises TriggerOutputsError: the API call failed.
        """
        run = self.get_run(run_id)
        self.require_success(run)
        return self.load_packet(run, "output", as_json=as_json).value

    def get_payload(self, run_id: str, *, as_json: bool = False) -> Any:
        """Return the payload a run was triggered with, in any status.

        Inline and offloaded payloads are handled like outputs; see
        :meth:`get_output`.

        :raises OutputUnavailableError: the API sent neither the payload nor
            a URL for it (it omits both for a public access token).
        :raises TriggerOutputsError: the API call, the download or decoding
            failed; see :meth:`get_output`.
        """
        run = self.get_run(run_id)
        return self.load_packet(run, "payload", as_json=as_json).value

    def get_result(
        self, run_id: str, *, as_json: bool = True, include_output: bool = True
    ) -> RunResult:
        """Return a run with its output when it completed successfully.

        Unlike :meth:`get_output`, a run that has not finished or that
        failed is not an error: the result carries the run alone, and
        callers read its status and ``error``.

        :param as_json: return the output in its JSON form (the default,
            which is what JSON responses need) or typed.
        :param include_output: load the output. When false, only
            ``output_offloaded`` is filled in, from the run, and nothing is
            downloaded.
        :raises OutputUnavailableError: the run completed but the API sent
            neither the output nor a URL for it.
        :raises TriggerOutputsError: the API call, the download or decoding
            failed; see :meth:`get_output`.
        """
        run = self.get_run(run_id)
        return self.load_result(run, as_json=as_json, include_output=include_output)

    def load_result(
        self,
        run: Run,
        *,
        as_json: bool = True,
        include_output: bool = True,
        json_text: bool = False,
    ) -> RunResult:
        """Build the result of a run already retrieved, loading its output
        when the run completed successfully.

        Nothing is downloaded unless ``include_output`` is true and the run
        succeeded. Without the output, ``output_offloaded`` still records
        where the output of a successful run is stored.

        :param as_json: return the output in its JSON form or typed; see
            :meth:`get_result`. Ignored with ``json_text``.
        :param include_output: load the output.
        :param json_text: fill in ``output_json`` with the JSON text of
            :meth:`load_cached_packet` instead of ``output``, so a response
            can include it as is and a cache hit decodes nothing.
        :raises OutputUnavailableError: the run completed but the API sent
            neither the output nor a URL for it.
        :raises TriggerOutputsError: the download or decoding failed; see
            :meth:`get_output`.
        """
        if not run.is_success:
            return RunResult(run=run)

        if not include_output:
            source = run.output
            offloaded = source.offloaded if source.available else None
            return RunResult(run=run, output_offloaded=offloaded)

        if json_text:
            packet = self.load_cached_packet(run, "output")
            return RunResult(
                run=run,
                has_output=True,
                output_size=packet.size,
                output_offloaded=packet.offloaded,
                output_json=packet.json_body,
            )

        loaded = self.load_packet(run, "output", as_json=as_json)
        return RunResult(
            run=run,
            output=loaded.value,
            has_output=True,
            output_size=loaded.size,
            output_offloaded=loaded.offloaded,
        )

    def load_packet(self, run: Run, kind: PacketKind, *, as_json: bool) -> LoadedPacket:
        """Return a run's output or payload, downloading and decoding it
        when it was offloaded.

        This is the one step that reads packet data, so a cache of finished
        runs wraps this method.

        :raises OutputUnavailableError: the run carries neither inline data
            nor a presigned URL for ``kind``.
        """
        if self.cache is not None:
            cached = self.load_cached_packet(run, kind)
            value = cached.decode(as_json=as_json, run_id=run.id)
            return LoadedPacket(value=value, size=cached.size, offloaded=cached.offloaded)

        source = find_packet(run.raw, kind)
        if source.inline:
            size = len(dump_json(source.value, run_id=run.id))
            return LoadedPacket(value=source.value, size=size, offloaded=False)
        packet = self._download_logged(run, kind)
        value = decoding.decode_packet(
            packet.data, packet.content_type, as_json=as_json, run_id=run.id
        )
        return LoadedPacket(value=value, size=packet.size, offloaded=True)

    def load_cached_packet(self, run: Run, kind: PacketKind) -> CachedPacket:
        """Return a run's output or payload in the form the cache keeps: the
        stored bytes and the JSON form serialized once, ready to send.

        With a cache, the packet is fetched at most once however many
        threads ask at the same time, and kept: an output exists only once
        its run has finished and a payload never changes after the trigger.

        :raises OutputUnavailableError: the run carries neither inline data
            nor a presigned URL for ``kind``.
        :raises TriggerOutputsError: the download or decoding failed; see
            :meth:`get_output`.
        """
        if self.cache is None:
            return self._fetch_packet(run, kind)
        return self.cache.get_or_load(
            self.cache.key(run.id, kind), lambda: self._fetch_packet(run, kind)
        )

    def _fetch_packet(self, run: Run, kind: PacketKind) -> CachedPacket:
        source = find_packet(run.raw, kind)
        if source.inline:
            return CachedPacket.from_json_value(source.value, run_id=run.id)
        packet = self._download_logged(run, kind)
        if self.cache is not None:
            self.cache.stats.record_download(packet.size)
        return CachedPacket.from_data(
            packet.data, packet.content_type, offloaded=True, run_id=run.id
        )

    def _download_logged(self, run: Run, kind: PacketKind) -> Packet:
        """Download a packet through :meth:`open_packet` and log its size and
        the time the download took."""
        started = time.perf_counter()
        packet, refreshed = self.open_packet(
            run, kind, lambda url: self.downloader.download(url, run_id=run.id)
        )
        logger.info(
            "Downloaded the %s of run %r: %d bytes in %.3f s%s.",
            kind,
            run.id,
            packet.size,
            time.perf_counter() - started,
            " (after refreshing an expired URL)" if refreshed else "",
        )
        return packet

    def open_packet(
        self, run: Run, kind: PacketKind, open_url: Callable[[str], T]
    ) -> tuple[T, bool]:
        """Open the presigned URL of a run's offloaded output or payload with
        ``open_url``, such as :meth:`PacketDownloader.download` or
        :meth:`PacketDownloader.stream`.

        When the storage host rejects the URL with 403 (it expired), the run
        is retrieved once more through :meth:`refresh_run`, which also puts
        the fresh URLs in the cache for later reads, and the fresh URL is
        opened.

        :return: what ``open_url`` returned, and whether the URL was refreshed.
        :raises OutputUnavailableError: the run carries no URL for ``kind``.
        :raises StorageError: the storage host rejected the fresh URL too, or
            ``open_url`` failed otherwise.
        """
        url = find_packet(run.raw, kind).presigned_url
        if url is None:
            raise self._unavailable_error(run, kind)

        try:
            return open_url(url), False
        except ExpiredUrlError:
            logger.info(
                "The presigned URL for the %s of run %r was rejected; retrieving the run"
                " again for a fresh URL.",
                kind,
                run.id,
            )

        fresh = find_packet(self.refresh_run(run.id).raw, kind)
        if fresh.presigned_url is None:
            raise self._unavailable_error(run, kind)

        try:
            return open_url(fresh.presigned_url), True
        except ExpiredUrlError as exc:
            raise StorageError(
                f"The storage host rejected the presigned URL for the {kind} of run"
                f" {run.id!r} twice, also right after Trigger.dev signed a fresh one."
                " Check that the clocks of Trigger.dev and the storage host agree and"
                " that the storage credentials of Trigger.dev are valid.",
                run_id=run.id,
                status_code=exc.status_code,
            ) from exc

    @staticmethod
    def require_success(run: Run) -> None:
        """Raise unless ``run`` completed successfully and so has an output.

        :raises RunNotFinishedError: the run has not finished yet.
        :raises RunFailedError: the run ended without success.
        """
        if run.is_success:
            return

        if not run.is_finished:
            raise RunNotFinishedError(
                f"Run {run.id!r} has not finished yet (status {run.status}); its output"
                " is available once it completes. Poll again later.",
                status=run.status,
                run_id=run.id,
            )

        error_name = run.error.name if run.error else None
        error_message = run.error.message if run.error else None
        detail = ""
        if error_name or error_message:
            text = ": ".join(part for part in (error_name, error_message) if part)
            if len(text) > _ERROR_MESSAGE_LENGTH:
                text = text[:_ERROR_MESSAGE_LENGTH] + "..."
            detail = f" Its error: {text}"
        raise RunFailedError(
            f"Run {run.id!r} finished without success (status {run.status}), so it has"
            f" no output.{detail}",
            status=run.status,
            error_name=error_name,
            error_message=error_message,
            run_id=run.id,
        )

    @staticmethod
    def _unavailable_error(run: Run, kind: PacketKind) -> OutputUnavailableError:
        # NOTE: a task that returns ``undefined`` also completes without an
        # output field, as far as the API shape shows, and is reported here
        # the same way: the response does not tell the two cases apart.
        if kind == "output":
            return OutputUnavailableError(
                f"Run {run.id!r} completed, but Trigger.dev returned neither its output"
                " nor a presigned URL for it, which happens when the server fails to"
                " sign the URL. Try again in a moment.",
                run_id=run.id,
            )
        return OutputUnavailableError(
            f"Trigger.dev returned neither the payload of run {run.id!r} nor a presigned"
            " URL for it. Check that the secret key is not a public access token, then"
            " try again in a moment.",
            run_id=run.id,
        )
