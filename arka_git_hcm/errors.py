"""The one rooted error tree of arka_git_hcm.

Every error the store can report carries the contract's error code, the HTTP status the
server answers with and the exit code of the ``arka-hcm`` command line. Front-ends translate
an :class:`HcmError` once (CLI: exit code + message; server: JSON error shape + status);
anything that is not an :class:`HcmError` is an ``INTERNAL_ERROR`` whose details never reach
the caller.

    HcmError                      INTERNAL_ERROR        500  exit 14
    ├── InvalidPayload            INVALID_PAYLOAD       400  exit 3
    │   └── UnsafePath            INVALID_PAYLOAD       400  exit 3
    ├── Unauthenticated           UNAUTHENTICATED       401  exit 4
    ├── AccessDenied              ACCESS_DENIED         403  exit 5
    ├── NotFound                  NOT_FOUND             404  exit 6
    │   └── MissionNotFound       MISSION_NOT_FOUND     404  exit 6
    ├── ConflictingUpdate         CONFLICTING_UPDATE    409  exit 7
    ├── PayloadTooLarge           PAYLOAD_TOO_LARGE     413  exit 8
    ├── IdempotencyMismatch       IDEMPOTENCY_MISMATCH  422  exit 9
    ├── Busy                      BUSY                  423  exit 10 (Retry-After)
    ├── StorageFull               STORAGE_FULL          507  exit 11
    ├── ReadOnly                  READ_ONLY             503  exit 12
    ├── IoError                   IO_ERROR              500  exit 13
    ├── InternalError             INTERNAL_ERROR        500  exit 14
    └── ConfigError               (startup only)        -    exit 2

Exit codes 0 (all ok), 1 (``verify`` found damage) and 2 (usage or configuration error)
are the command line's own.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AccessDenied",
    "Busy",
    "ConfigError",
    "ConflictingUpdate",
    "HcmError",
    "IdempotencyMismatch",
    "InternalError",
    "InvalidPayload",
    "IoError",
    "MissionNotFound",
    "NotFound",
    "PayloadTooLarge",
    "ReadOnly",
    "StorageFull",
    "Unauthenticated",
    "UnsafePath",
    "error_for_code",
    "from_os_error",
]


class HcmError(Exception):
    """Base of every error the store reports in the contract's shape."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 14

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``error`` object: ``{code, message, details}``."""
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidPayload(HcmError):
    code = "INVALID_PAYLOAD"
    http_status = 400
    exit_code = 3


class UnsafePath(InvalidPayload):
    """A path or id that would leave HCM_ROOT, reach .git, or alias another name."""


class Unauthenticated(HcmError):
    code = "UNAUTHENTICATED"
    http_status = 401
    exit_code = 4


class AccessDenied(HcmError):
    code = "ACCESS_DENIED"
    http_status = 403
    exit_code = 5


class NotFound(HcmError):
    code = "NOT_FOUND"
    http_status = 404
    exit_code = 6


class MissionNotFound(NotFound):
    code = "MISSION_NOT_FOUND"


class ConflictingUpdate(HcmError):
    code = "CONFLICTING_UPDATE"
    http_status = 409
    exit_code = 7


class PayloadTooLarge(HcmError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413
    exit_code = 8


class IdempotencyMismatch(HcmError):
    code = "IDEMPOTENCY_MISMATCH"
    http_status = 422
    exit_code = 9


class Busy(HcmError):
    code = "BUSY"
    http_status = 423
    exit_code = 10

    def __init__(self, message: str, details: dict[str, Any] | None = None, retry_after: int = 1) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after
        self.details.setdefault("retry_after", retry_after)


class StorageFull(HcmError):
    code = "STORAGE_FULL"
    http_status = 507
    exit_code = 11


class ReadOnly(HcmError):
    code = "READ_ONLY"
    http_status = 503
    exit_code = 12


class IoError(HcmError):
    code = "IO_ERROR"
    http_status = 500
    exit_code = 13


class InternalError(HcmError):
    code = "INTERNAL_ERROR"
    http_status = 500
    exit_code = 14


class ConfigError(HcmError):
    """The configuration or environment is unusable; raised at start, never per request."""

    code = "CONFIG_ERROR"
    http_status = 500
    exit_code = 2


_BY_CODE: dict[str, type[HcmError]] = {
    cls.code: cls
    for cls in (
        InvalidPayload,
        Unauthenticated,
        AccessDenied,
        NotFound,
        MissionNotFound,
        ConflictingUpdate,
        PayloadTooLarge,
        IdempotencyMismatch,
        Busy,
        StorageFull,
        ReadOnly,
        IoError,
        InternalError,
    )
}


def error_for_code(code: str) -> type[HcmError]:
    """The error class for a contract code (unknown codes map to InternalError)."""
    return _BY_CODE.get(code, InternalError)


def from_os_error(exc: OSError, what: str) -> HcmError:
    """Translate an OSError into the contract: a full disk and a read-only volume have their own codes."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"no space left while {what}; free space on the HCM volume and retry")
    if exc.errno == errno.EROFS:
        return ReadOnly(f"the HCM volume is read-only ({what}); remount it read-write")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return IoError(
            f"a symbolic link or a file stands where the store writes ({exc.filename or what}) while "
            f"{what}; the store never follows links: remove it (run `arka-hcm verify`)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ReadOnly(
            f"permission denied while {what}; the HCM folder must be writable by this process's user"
        )
    return IoError(f"I/O error while {what}: {exc.strerror or exc}")
