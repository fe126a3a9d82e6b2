"""botocore's exceptions, classified into caller errors.

AWS error codes decide first, the HTTP status second: AWS reuses statuses for unlike
situations (403 is both "this key does not exist" and "this key may not do that";
400 is both a malformed request and an expired session token), while the error code
(x-amzn-ErrorType / __type, which botocore puts in Error.Code) names the situation.

Every exception is raised `from None` by the caller: botocore's exceptions can carry
the signed request, and a chained traceback must not bring it into the hub's logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.eventstream import ParserError
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from callers import pools
from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    error_from_http_status,
    parse_retry_after,
)

# AWS answers a key it does not know, a wrong secret or an expired session token with
# 403 (or 400), never 401: these codes are what "the key is not accepted" looks like.
_KEY_NOT_ACCEPTED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)

_BY_CODE: Mapping[str, type[CallerError]] = {
    "AccessDeniedException": PermissionDenied,  # a valid key without the IAM permission
    "ResourceNotFoundException": NotFound,
    "ThrottlingException": RateLimited,
    # Tokens-per-minute and similar account quotas: the same "slow down" as throttling.
    "ServiceQuotaExceededException": RateLimited,
    "ValidationException": InvalidRequest,
    "ModelTimeoutException": ProviderTimeout,
    "ServiceUnavailableException": ProviderUnavailable,
    "InternalServerException": ProviderUnavailable,
    "ModelNotReadyException": ProviderUnavailable,
    "ModelErrorException": ProviderUnavailable,  # 424: the model itself failed
    "ModelStreamErrorException": ProviderUnavailable,
}


def error_code(exc: ClientError) -> str:
    """The AWS error code, with event-stream exceptions' lowerCamel names capitalised.

    Inside ConverseStream, AWS names exceptions by their stream member
    (`throttlingException`); the same error as an HTTP answer is `ThrottlingException`.
    """
    code = str(exc.response.get("Error", {}).get("Code") or "")
    return code[:1].upper() + code[1:]


def _status_and_retry_after(exc: ClientError) -> tuple[int | None, str | None]:
    metadata: Mapping[str, Any] = exc.response.get("ResponseMetadata", {})
    status = metadata.get("HTTPStatusCode")
    headers: Mapping[str, str] = metadata.get("HTTPHeaders", {})
    return (status if isinstance(status, int) else None), headers.get("retry-after")


def provider_message(exc: ClientError) -> str:
    message = str(exc.response.get("Error", {}).get("Message") or "")
    return message or error_code(exc) or "no message"


def client_error(exc: ClientError) -> CallerError:
    code = error_code(exc)
    message = provider_message(exc)
    status, retry_after_header = _status_and_retry_after(exc)
    retry_after = parse_retry_after(retry_after_header)
    if code in _KEY_NOT_ACCEPTED:
        return AuthenticationFailed(message, provider_status=status)
    kind = _BY_CODE.get(code)
    if kind is not None:
        return kind(message, retry_after=retry_after, provider_status=status)
    if status is not None and status >= 400:
        return error_from_http_status(status, message, retry_after_header)
    # An unknown code without an HTTP status: an exception event inside a stream.
    return ProviderUnavailable(f"{code or 'error'}: {message}")


def caller_error(exc: BaseException, host: str) -> CallerError:
    """The caller error for anything a botocore call raised."""
    if isinstance(exc, CallerError):
        return exc
    if isinstance(exc, ClientError):  # EventStreamError (mid-stream exceptions) included
        status, _ = _status_and_retry_after(exc)
        if status is not None and 300 <= status < 400:
            # Not followed (callers.bedrock.transport, redirect=False): the request is signed
            # with the key. botocore would report it as "302: 302".
            headers: Mapping[str, str] = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            return pools.redirect_refused(status, host, headers.get("location"))
        return client_error(exc)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | Urllib3ReadTimeout | TimeoutError):
        return ProviderTimeout(f"{host} did not answer within the timeout")
    if isinstance(exc, BotocoreConnectionError):  # refused, DNS, TLS verification failed
        return ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})")
    if isinstance(exc, ConnectionClosedError | ProtocolError | HTTPClientError | ConnectionError):
        return ProviderUnavailable(f"{host} closed the connection mid-answer ({type(exc).__name__})")
    if isinstance(exc, ParserError):
        return ProviderUnavailable(f"{host} sent a malformed event stream: {exc}")
    if isinstance(exc, ParamValidationError):
        # botocore checks the request against the API model before sending it.
        return InvalidRequest(f"the request does not fit the Bedrock API: {exc}")
    return ProviderUnavailable(f"unexpected failure talking to {host}: {type(exc).__name__}")


def is_key_rejection(exc: CallerError) -> bool:
    return isinstance(exc, AuthenticationFailed | PermissionDenied)
