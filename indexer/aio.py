"""asyncio helpers shared by the layers (core: imports nothing of the package)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def settle(future: asyncio.Future[T]) -> T:
    """Await ``future`` to its end even if the awaiting task is cancelled meanwhile, then raise
    that cancellation (after the result is in). For work on another thread, which a
    cancellation cannot stop: whoever holds a lock or a connection across this await keeps it
    until that work is done, so the next user never finds it in use (or a transaction open)."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            if future.cancelled():
                raise
            cancelled = exc  # the awaiting task's: wait on
        except BaseException:
            pass  # the future's own error: future.result() raises it below
    if cancelled is not None:
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" warning
        raise cancelled
    return future.result()
