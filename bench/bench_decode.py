"""Decode a 5 MB superjson packet versus ``json.loads`` of the same bytes.

The packet is a crawl output written by the official serializer (about 14,000
pages, each with a Date and an undefined field, plus a Map and a Set). Both
decoders run on the same bytes, alternately, ROUNDS times; the figure is the
ratio of the median times. Target: at most 2x.
"""

from __future__ import annotations

import gc
import json
import time

from _common import MB, median_ms, real_packet

from flask_trigger_outputs import superjson

ROUNDS = 15


def timed(fn: object, data: bytes) -> float:
    gc.collect()
    started = time.perf_counter()
    fn(data)  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    data, data_type = real_packet(5 * MB)
    print(f"packet: {len(data):,} bytes, {data_type}")

    # Warm up both paths once, and check that the decoder reads the packet.
    typed = superjson.parse(data)
    assert len(typed["pages"]) > 1000
    json.loads(data)

    typed_times, as_json_times, plain_times = [], [], []
    for _ in range(ROUNDS):
        plain_times.append(timed(json.loads, data))
        typed_times.append(timed(superjson.parse, data))
        as_json_times.append(timed(superjson.parse_as_json, data))

    plain = median_ms(plain_times)
    typed_ms = median_ms(typed_times)
    as_json_ms = median_ms(as_json_times)
    print(f"json.loads:                {plain:8.1f} ms (median of {ROUNDS})")
    print(f"superjson.parse (typed):   {typed_ms:8.1f} ms  {typed_ms / plain:.2f}x")
    print(f"superjson.parse_as_json:   {as_json_ms:8.1f} ms  {as_json_ms / plain:.2f}x")
    print(f"typed superjson decode / json.loads: {typed_ms / plain:.2f}")


if __name__ == "__main__":
    main()
