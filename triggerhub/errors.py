"""Every error triggerhub raises, in one tree.

    TriggerhubError
    ├── ConfigError            bad TRIGGERHUB_* setting or flag, reported at start-up
    ├── AdminError             a `triggerhub admin` change cannot be made (unknown subject, bad key)
    ├── ApiError               answered to a client as {"error", "code"} with .status
    │   ├── BadRequest         400
    │   │   └── PatternError   a rule's filter or transform does not compile; .path names the clause
    │   ├── Unauthorized       401
    │   ├── Forbidden          403
    │   ├── NotFound           404
    │   ├── MethodNotAllowed   405
    │   ├── Conflict           409
    │   ├── PayloadTooLarge    413
    │   ├── Throttled          429
    │   ├── InternalError      500
    │   └── Unavailable        503
    ├── StoreError             the database failed or refused
    │   └── RevisionConflict   optimistic-concurrency clash (becomes 409)
    ├── BusError               the event/invocation bus failed
    ├── ActionRuntimeError     a process/container could not be created or talked to
    │   └── UnsupportedKind    this runtime cannot run the action's kind (a developer error)
    ├── FeedError              a feed adapter could not start or talk to its source
    └── ManifestError          a manifest is invalid; carries every problem found

Third-party exceptions are translated into these at the adapter edge (`raise X(...) from exc`).
A message says what failed, the offending value, and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


class TriggerhubError(Exception):
    """Base of every triggerhub error."""


class ConfigError(TriggerhubError):
    pass


class AdminError(TriggerhubError):
    pass


class ApiError(TriggerhubError):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class PatternError(BadRequest):
    """A filter or transform that cannot be compiled. The message names the JSON path of the
    offending clause (also in `.path`, e.g. `$.data.temp[0].numeric[0]`) and what is allowed there."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class Throttled(ApiError):
    status = 429


class InternalError(ApiError):
    status = 500


class Unavailable(ApiError):
    status = 503


class StoreError(TriggerhubError):
    pass


class RevisionConflict(StoreError):
    pass


class BusError(TriggerhubError):
    pass


class ActionRuntimeError(TriggerhubError):
    pass


class UnsupportedKind(ActionRuntimeError):
    """The runtime cannot run this kind at all (blackbox under the process runtime): retrying
    will not help, so the activation is the developer's error and carries this message."""


class FeedError(TriggerhubError):
    pass


@dataclass(frozen=True, slots=True)
class Problem:
    """One manifest problem: where it is and what is wrong."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column} {self.path}: {self.message}"


class ManifestError(TriggerhubError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# Messages OpenWhisk clients match on (reference/openwhisk.md section 1).
NOT_FOUND = "The requested resource does not exist."
FORBIDDEN = "The supplied authentication is not authorized to access this resource."
AUTH_INVALID = "The supplied authentication is invalid"
AUTH_MISSING = "The resource requires authentication, which was not supplied with the request"
ILLEGAL_NAME = "The name of the entity contains illegal characters."
ALREADY_EXISTS = "resource already exists"
CONCURRENT_MODIFICATION = "Concurrent modification to resource detected."
WRONG_COLLECTION = "Resource by this name exists but is not in this collection."
RESERVED_PARAMS = "Request defines parameters that are not allowed (e.g., reserved properties)."
