"""Temporarily changing torch's intra-op thread count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count.

    Small models (tiny training loops, the retriever's heads) run faster on one thread than
    on two busy cores, where OpenMP spinning costs more than the parallelism brings.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
