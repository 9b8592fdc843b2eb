"""Request bodies read with a size limit: refused as soon as they are known to be too large (the
declared Content-Length, or the bytes received so far), never held whole in memory first. Used
by the operation routes and the git routes alike."""

from __future__ import annotations

from fastapi import Request

from ..errors import PayloadTooLarge

__all__ = ["read_body"]


async def read_body(request: Request, limit: int, what: str = "the body") -> bytes:
    """The body of ``request``; PAYLOAD_TOO_LARGE (413) past ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {declared} bytes; the limit is {limit}", {"limit": limit})
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"{what} exceeds {limit} bytes", {"limit": limit})
        parts.append(part)
    return b"".join(parts)
