"""Cost of verified, robust Shamir reconstruction per secret, against plain ``combine``, one run.

For each (m shares received, threshold t) it times, per secret:

* ``combine``: Lagrange interpolation of the first t shares, unchecked (before this change);
* ``honest``: ``robust_combine`` with every share right, checked against a seed commitment
  (one SHA-256, :func:`privfl.secagg.session.seed_commitment`): the cost every round pays;
* ``1 wrong``: one wrong share among the first t (Berlekamp-Welch when m >= t + 2, else
  the subset search), the cost a lying holder imposes;
* ``e wrong``: floor((m - t) / 2) wrong shares (Berlekamp-Welch's limit).

Usage: ``python benchmarks/secagg_reconstruct.py [--repeat 20]``
"""

from __future__ import annotations

import argparse
import os
import timeit

from privfl.secagg.session import seed_commitment
from privfl.secagg.shamir import PRIME, combine, robust_combine, split

CASES = ((4, 3), (8, 5), (16, 9), (32, 17), (64, 33))


def _per_call(fn, repeat: int) -> float:
    """Best of 5 runs of the mean time of ``repeat`` calls (seconds): the machine is shared."""
    return min(timeit.repeat(fn, number=repeat, repeat=5)) / repeat


def row(m: int, t: int, repeat: int) -> str:
    session, seed = os.urandom(32), os.urandom(32)
    commitment = seed_commitment(session, 7, seed)

    def verifies(candidate: bytes) -> bool:
        return seed_commitment(session, 7, candidate) == commitment

    shares = split(seed, range(1, m + 1), t)
    one = {**shares, 1: (shares[1] + 1) % PRIME}
    e = max((m - t) // 2, 1)
    many = {**shares, **{x: (shares[x] + x) % PRIME for x in range(1, e + 1)}}
    for case in (shares, one, many):
        found = robust_combine(case, t, verifies)
        assert found is not None and found.secret == seed
    plain = _per_call(lambda: combine(shares, t), repeat)
    honest = _per_call(lambda: robust_combine(shares, t, verifies), repeat)
    wrong = _per_call(lambda: robust_combine(one, t, verifies), max(repeat // 10, 1))
    worst = _per_call(lambda: robust_combine(many, t, verifies), max(repeat // 10, 1))
    return (
        f"{m:>4} {t:>4} {plain * 1e3:>10.3f} {honest * 1e3:>10.3f} {honest / plain:>6.2f} "
        f"{wrong * 1e3:>10.2f} {worst * 1e3:>10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"{'m':>4} {'t':>4} {'combine':>10} {'honest':>10} {'ratio':>6} {'1 wrong':>10} {'e wrong':>10}  (ms/secret)")
    for m, t in CASES:
        print(row(m, t, args.repeat), flush=True)


if __name__ == "__main__":
    main()
