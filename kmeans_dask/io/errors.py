"""Storage failures, named and classified.

Every storage call of the package goes through :func:`storage_errors` (or
:func:`storage_error`), so that a failure the user sees says *what* was being done, *where*
and *why*, in one line::

    reading s3://bucket/key: access denied (check the credentials for bucket 'bucket'; the
    store said InvalidAccessKeyId: The AWS Access Key Id you provided does not exist ...)

and :func:`is_transient` tells an orchestrator whether trying again can help (network errors,
connection resets, timeouts, HTTP 5xx, throttling) or cannot (access denied, a missing bucket
or file, bad data, a bad config).

The classification reads the exception chain (``__cause__`` / ``__context__``): s3fs turns a
botocore ``ClientError`` into ``PermissionError`` / ``FileNotFoundError`` / ``OSError`` raised
*from* it, and the error code and HTTP status live on the ``ClientError``. Classes of optional
backends (botocore, aiohttp, urllib3, requests) are recognised by name, so this module
imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..exceptions import (
    ConfigError,
    InputError,
    InvalidParameterError,
    KMeansDaskError,
    StorageError,
)

__all__ = [
    "bucket_of",
    "error_code",
    "is_access_denied",
    "is_missing_bucket",
    "is_storage_failure",
    "is_transient",
    "storage_error",
    "storage_errors",
]

#: S3 (and compatible) error codes that mean the credentials were refused
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
        "403",
        "401",
        "Forbidden",
    }
)
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
#: error codes worth retrying: throttling and the service's own failures
_TRANSIENT_CODES = frozenset(
    {
        "BandwidthLimitExceeded",
        "InternalError",
        "InternalFailure",
        "OperationAborted",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "TransactionInProgressException",
        "429",
        "500",
        "502",
        "503",
        "504",
    }
)
#: exception classes (by name, anywhere in the MRO) of network failures in the HTTP stacks
#: that s3fs/gcsfs/adlfs use: botocore, aiohttp, urllib3, requests
_TRANSIENT_CLASSES = frozenset(
    {
        "ClientConnectionError",
        "ClientOSError",
        "ClientPayloadError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "EndpointConnectionError",
        "HTTPClientError",
        "IncompleteReadError",
        "NewConnectionError",
        "ProtocolError",
        "ProxyConnectionError",
        "ReadTimeout",
        "ReadTimeoutError",
        "ResponseStreamingError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
    }
)
#: backends whose exceptions are storage failures (never a data or config error)
_STORAGE_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling (each once)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _class_names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _response(exc: BaseException) -> dict[str, Any]:
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else {}


def error_code(exc: BaseException) -> str | None:
    """The service's error code (``'AccessDenied'``, ``'SlowDown'``, ``'NoSuchBucket'``) or,
    failing that, the HTTP status as text (``'503'``), from the first exception in the chain
    that carries a botocore-style ``response``; None when there is none."""
    for e in _chain(exc):
        response = _response(e)
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return None


def _http_status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        status = (_response(e).get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return int(status)
        status = getattr(e, "status", None) or getattr(e, "status_code", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


def _is_deterministic(exc: BaseException) -> bool:
    """An error about the config, the data or a parameter: trying again cannot help."""
    return isinstance(exc, ConfigError | InputError | InvalidParameterError)


def is_transient(exc: BaseException) -> bool:
    """True when trying the operation again may succeed.

    Transient: connection errors and resets, timeouts, the network errors of botocore and
    aiohttp, HTTP 5xx and 429, and the throttling/service codes ``SlowDown``, ``Throttling``,
    ``RequestTimeout``, ``InternalError``, ``ServiceUnavailable`` (anywhere in the chain of
    ``__cause__`` / ``__context__``, so a :class:`StorageError` raised from one is transient
    too). Never transient: a config, data or parameter error of this package
    (:class:`ConfigError`, :class:`InputError` and its subclasses,
    :class:`InvalidParameterError`), access denied, a missing bucket or file.
    """
    if _is_deterministic(exc):
        return False
    for e in _chain(exc):
        if _is_deterministic(e):
            return False
        if isinstance(e, ConnectionError | TimeoutError):
            return True
        if _class_names(e) & _TRANSIENT_CLASSES:
            return True
        code = (_response(e).get("Error") or {}).get("Code")
        if code and str(code) in _TRANSIENT_CODES:
            return True
    status = _http_status(exc)
    return status is not None and (status >= 500 or status == 429)


def is_access_denied(exc: BaseException) -> bool:
    """True when the store refused the credentials (403, AccessDenied, InvalidAccessKeyId,
    SignatureDoesNotMatch, an expired token) or the OS refused the access."""
    code = error_code(exc)
    if code in _DENIED_CODES:
        return True
    return any(isinstance(e, PermissionError) for e in _chain(exc))


def is_missing_bucket(exc: BaseException) -> bool:
    """True when the store says the bucket does not exist (``NoSuchBucket``)."""
    if error_code(exc) in _MISSING_BUCKET_CODES:
        return True
    return any("bucket does not exist" in str(e).lower() for e in _chain(exc))


def is_storage_failure(exc: BaseException) -> bool:
    """True when ``exc`` is a failure of the storage (permissions, a missing object, the
    network, the service) rather than of the bytes read: an OS error of a known kind, or any
    exception of an HTTP/S3 client library, anywhere in the chain.

    A plain ``OSError`` without a cause is *not* one: pyarrow raises those for corrupt files
    ("Couldn't deserialize thrift", "Corrupt snappy compressed data").
    """
    for e in _chain(exc):
        if isinstance(e, KMeansDaskError):
            return isinstance(e, StorageError)
        if isinstance(e, PermissionError | FileNotFoundError | ConnectionError | TimeoutError):
            return True
        if type(e).__module__.split(".")[0] in _STORAGE_MODULES:
            return True
        if _response(e) or is_transient(e):
            return True
    return False


def bucket_of(uri: str) -> str | None:
    """The bucket (container) of an object-store URI (``s3://bucket/key`` -> ``'bucket'``);
    None for a local path."""
    text = str(uri).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() in ("file", "local"):
        return None
    return rest.lstrip("/").split("/", 1)[0] or None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _server_says(exc: BaseException) -> str:
    """The store's own words: ``'InvalidAccessKeyId: The AWS Access Key Id ...'``."""
    code = error_code(exc)
    for e in _chain(exc):
        message = (_response(e).get("Error") or {}).get("Message")
        if message:
            return f"{code}: {message}" if code and code not in message else str(message)
    return f"{code}: {_first_line(exc)}" if code else f"{type(exc).__name__}: {_first_line(exc)}"


def _reason(exc: BaseException, uri: str) -> str:
    bucket = bucket_of(uri)
    if is_missing_bucket(exc):
        return f"bucket {bucket!r} does not exist (no bucket is ever created; check the uri)"
    if is_access_denied(exc):
        if bucket is None:
            return f"permission denied ({_first_line(exc)})"
        return (
            f"access denied (check the credentials for bucket {bucket!r}; the store said "
            f"{_server_says(exc)})"
        )
    if isinstance(exc, FileNotFoundError) or any(
        isinstance(e, FileNotFoundError) for e in _chain(exc)
    ):
        return "not found"
    if is_transient(exc):
        return f"temporary failure, worth retrying ({_server_says(exc)})"
    return _server_says(exc)


def storage_error(operation: str, uri: str, exc: BaseException) -> StorageError:
    """A :class:`StorageError` for a failed storage operation, naming the operation, the URI
    and, for object stores, the bucket: ``"{operation} {uri}: {reason}"``, e.g.
    ``"reading s3://b/k: access denied (check the credentials for bucket 'b'; ...)"``,
    ``"listing s3://nob/data: bucket 'nob' does not exist ..."``,
    ``"writing s3://b/k: temporary failure, worth retrying (SlowDown: ...)"``.

    The caller raises it ``from exc`` so that :func:`is_transient` still sees the cause::

        except Exception as exc:
            raise storage_error("writing", uri, exc) from exc

    ``operation`` is a verb phrase ("reading", "listing", "writing", "removing", "taking the
    lease of"); ``uri`` is the user-facing URI (``s3://bucket/key`` or a local path).
    Credentials never appear: neither botocore's messages nor the URI carry them.
    """
    return StorageError(f"{operation} {uri}: {_reason(exc, uri)}")


@contextmanager
def storage_errors(operation: str, uri: str) -> Iterator[None]:
    """Turn any failure inside the block into :func:`storage_error` (raised from it).

    Errors of this package (a :class:`DatasetError` raised inside, another
    :class:`StorageError`) pass through unchanged. Handle an expected ``FileNotFoundError``
    inside the block if a missing object is not an error for the caller::

        with storage_errors("reading", to_uri(fs, path)):
            data = fs.cat_file(path)
    """
    try:
        yield
    except KMeansDaskError:
        raise
    except Exception as exc:
        raise storage_error(operation, uri, exc) from exc
