"""Keeping a CPU run's resident memory at what it holds, not at what glibc's heap has fragmented into.

glibc serves allocations above its mmap threshold with their own mappings, returned to the system when freed, but it
raises that threshold (up to 32 MiB) each time such a block is freed. At SD sizes a step's activations and gradients
are 2-30 MiB each, so after the first step they land in the heap, interleaved with long-lived Adam state, and the
freed holes cannot be returned: measured at SD 1.5 size, ~1 GB of resident memory held for nothing. Pinning the
threshold keeps those blocks in their own mappings. Small models skip it: there the blocks stay below the threshold
anyway, and pinning only adds page faults (the miniature's un-cached step: +50 %).
"""

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024  # ViT-L's 768x768 weights (2.25 MiB) and everything larger go to mmap
LARGE_MODEL_PARAMS = 50_000_000  # SD 1.x's text tower has 123 M; the miniature's 0.6 M


def pin_mmap_threshold(num_params, device_type):
    """Pin glibc's mmap threshold for CPU runs of SD-size encoders; returns whether it was pinned."""
    if device_type != "cpu" or num_params < LARGE_MODEL_PARAMS or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
