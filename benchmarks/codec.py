"""Wire codec throughput against a raw memcpy of the same bytes, side by side in one run.

For a message holding one float32 array of d parameters (default d = 2.5e5, 4e6 and
4e7: 1, 16 and 160 MB), times, as the median of repeats:

- memcpy: copying the array's bytes into a new ``bytes`` object (what any encoder that
  returns ``bytes`` must at least do) and into a new numpy array (numpy backs large
  allocations with transparent huge pages, so this is the machine's copy bandwidth);
- encode: :func:`privfl.core.wire.encode` (returns ``bytes``) and
  :func:`~privfl.core.wire.encode_array` (returns a read-only numpy array, what the
  transports use);
- decode: :func:`~privfl.core.wire.decode` of ``bytes`` (zero copies: read-only views),
  of the ``encode_array`` output handed over with ``owned=True`` (zero copies: writable
  views), and of a ``bytearray`` the caller keeps (copied once).

Throughput is message bytes per second (GB = 10^9 bytes); ratios are against the memcpy
into new ``bytes``. The machine may be shared: compare columns of one run, not runs.

    .venv/bin/python benchmarks/codec.py [--dims 250000,4000000,40000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from privfl.core.message import Message, MessageKind, Metadata
from privfl.core.wire import decode, encode, encode_array


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out  # freed before the next repeat, as a transport frees a delivered message
    return statistics.median(times)


def measure(dim: int, repeats: int) -> list[tuple[str, float]]:
    values = np.random.default_rng(0).uniform(-1, 1, dim).astype(np.float32)
    message = Message(Metadata(1, 1, 0, 1, MessageKind.TRAIN), arrays={"w": values}, config={"lr": 0.1})
    as_bytes, as_array = encode(message), encode_array(message)
    mutable = bytearray(as_bytes)
    for name, source in (("bytes", as_bytes), ("array", as_array), ("bytearray", mutable)):
        got = decode(source, owned=source is as_array).arrays["w"]
        if not np.array_equal(got, values):
            raise RuntimeError(f"decode of {name} did not give back the array")
    cases = {
        "memcpy into new bytes": lambda: values.tobytes(),
        "memcpy into new array": lambda: values.copy(),
        "encode -> bytes": lambda: encode(message),
        "encode_array -> array": lambda: encode_array(message),
        "decode bytes (view)": lambda: decode(as_bytes),
        "decode owned (view)": lambda: decode(as_array, owned=True),
        "decode bytearray (copy)": lambda: decode(mutable),
    }
    return [(name, median_seconds(fn, repeats)) for name, fn in cases.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", default="250000,4000000,40000000", help="comma-separated float32 parameter counts")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'parameters':>11} {'MB':>7}  {'operation':<24} {'ms':>9} {'GB/s':>8} {'vs memcpy':>10}")
    for dim in (int(d) for d in args.dims.split(",")):
        size = dim * 4
        rows = measure(dim, args.repeats)
        reference = rows[0][1]
        for name, seconds in rows:
            rate, ratio = size / seconds / 1e9, reference / seconds
            print(f"{dim:>11} {size / 1e6:>7.1f}  {name:<24} {seconds * 1e3:>9.3f} {rate:>8.2f} {ratio:>9.2f}x")
        print()


if __name__ == "__main__":
    main()
