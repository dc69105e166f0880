"""Reason codes: which features pushed a score up the most."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _top(contributions, k):
    n, m = contributions.shape
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = contributions[i]
        for slot in range(k):
            best = -1
            for j in range(m):
                taken = False
                for earlier in range(slot):
                    if out[i, earlier] == j:
                        taken = True
                        break
                # strictly greater: on a tie the lower feature index wins
                if not taken and (best < 0 or row[j] > row[best]):
                    best = j
            out[i, slot] = best
    return out


def top_contributions(contributions: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the ``k`` largest contributions, largest first; ties go to the
    lower feature index (the order of a stable sort of ``-contributions``). One compiled pass:
    sorting every row of a 1,000-transaction batch to keep three cost a millisecond."""
    contributions = np.ascontiguousarray(contributions, dtype=np.float64)
    k = max(0, min(int(k), contributions.shape[1]))
    return _top(contributions, k)
