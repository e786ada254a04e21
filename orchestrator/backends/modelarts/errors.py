"""Cloud errors turned into messages a user can act on.

``explain(status, code, message, what)`` returns the exception to raise for an error answer
of ModelArts, the API gateway or OBS: ``UserError`` for what the user can fix (credentials,
flavour, quota, bucket), ``NotFound`` for a missing resource (deletes treat it as done),
``CloudError`` for the rest. ``retryable`` says whether waiting and trying again may help.
Messages never contain credentials: only the names of the variables that hold them.
"""

from __future__ import annotations

from orchestrator.backends.base import BackendError
from orchestrator.errors import UserError

THROTTLED = frozenset({"APIGW.0308", "SlowDown", "ModelArts.0105"})
AUTH = frozenset({"APIGW.0301", "APIGW.0303", "APIGW.0305", "APIGW.0101", "ModelArts.0203", "ModelArts.0204",
                  "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ModelArts.6350"})
FLAVOR = frozenset({"ModelArts.2763", "ModelArts.2781", "ModelArts.2793", "ModelArts.2840", "ModelArts.6323",
                    "ModelArts.3835", "ModelArts.3836", "ModelArts.3954", "ModelArts.3976"})
QUOTA = frozenset({"ModelArts.0116", "ModelArts.0118", "ModelArts.2815", "ModelArts.2833", "ModelArts.3561",
                   "ModelArts.3578", "TooManyBuckets"})
BUCKET = frozenset({"NoSuchBucket", "ModelArts.4311"})
_MISSING = ("not found", "not exist", "unsupported", "not supported")
NOT_FOUND = frozenset({"ModelArts.2775", "NoSuchKey", "ModelArts.3502", "ModelArts.3520"})


class CloudError(BackendError):
    """An error answer from the cloud that the user cannot fix by editing files."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class NotFound(CloudError):
    """The resource does not exist (any more)."""


class MissingBucket(UserError):
    """The OBS bucket named does not exist."""


def retryable(status: int | None, code: str | None = None) -> bool:
    return status == 429 or (status is not None and status >= 500) or code in THROTTLED


def explain(status: int | None, code: str | None, message: str | None, what: str, *,
            credentials: str = "the AK/SK", request_id: str | None = None) -> Exception:
    code, message = code or "", (message or "").strip()
    said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    said += f" (request id {request_id})" if request_id else ""
    text = message.lower()
    if status == 401 or code in AUTH or (status == 403 and "signature" in text):
        return UserError(f"{what}: the cloud rejected the credentials ({said})",
                         hint=f"check {credentials}: the access key must exist and the secret key must match it; "
                              "check the system clock too (signatures older than 15 minutes are refused)")
    if code in FLAVOR or (status == 400 and "flavor" in text and any(w in text for w in _MISSING)):
        return UserError(f"{what}: unknown or unavailable flavour ({said})",
                         hint="set train.flavor / service.flavor to a flavour your project offers "
                              "(ModelArts console, or GET /v2/{project_id}/training-job-flavors)")
    if code in QUOTA or "quota" in text:
        return UserError(f"{what}: a quota is exhausted ({said})",
                         hint="delete what you no longer need (`python -m orchestrator cleanup`) or ask for "
                              "a larger quota")
    if code in BUCKET:
        return MissingBucket(f"{what}: the OBS bucket does not exist ({said})",
                         hint="create the bucket in the OBS console (same region), or set `bucket:` in "
                              "pipeline.yaml to one you own")
    if status == 404 or code in NOT_FOUND:
        return NotFound(f"{what}: not found ({said})", status, code)
    if retryable(status, code):
        return CloudError(f"{what}: the cloud is busy or failing ({said}); retries did not help", status, code)
    return CloudError(f"{what} failed ({said})", status, code)
