"""An ASGI ``receive`` that stops a request body at a size limit (the kit API's JSON, the web's forms)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Receive


def capped(receive: Receive, limit: int, too_large: Callable[[], Exception]) -> Receive:
    """``receive``, raising ``too_large()`` once the request's body has passed ``limit`` bytes."""
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    return wrapped
