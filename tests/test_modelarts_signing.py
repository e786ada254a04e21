"""SDK-HMAC-SHA256 on both sides, error explanations and the retry policy (no servers)."""

from datetime import datetime, timedelta, timezone

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from orchestrator.backends.modelarts import signing
from orchestrator.backends.modelarts.errors import CloudError, MissingBucket, NotFound, explain
from orchestrator.backends.modelarts.rest import Retry, Transient
from orchestrator.errors import UserError

AK, SK = "AKEXAMPLE", "secret/key+with=odd&chars"
DATE = "20261123T085659Z"
NOW = datetime(2026, 11, 23, 8, 57, tzinfo=timezone.utc)


def sdk_authorization(method, path, query, headers, body):
    request = SdkRequest(method=method, schema="http", host="127.0.0.1:8080", resource_path=path,
                         query_params=list(query), header_params=dict(headers), body=body)
    return Signer(BasicCredentials(AK, SK, "proj")).sign(request).header_params["Authorization"]


@pytest.mark.parametrize("method,path,query,body", [
    ("GET", "/v1/proj/models", [("offset", "0"), ("limit", "100"), ("model_name", "a b/ü")], b""),
    ("POST", "/v2/proj/training-job-searches", [], b'{"offset": 0, "limit": 1}'),
    ("DELETE", "/v1/proj/services/0e07b41b-173e-42db", [], b""),
])
def test_our_signature_is_the_sdks(method, path, query, body):
    headers = {"Content-Type": "application/json;charset=utf-8", "X-Project-Id": "proj", "X-Sdk-Date": DATE,
               "User-Agent": "test"}
    ours = signing.sign(method, f"http://127.0.0.1:8080{path}", headers, body, AK, SK, query=query)
    assert ours["Authorization"] == sdk_authorization(method, path, query, headers, body)
    assert ours["Host"] == "127.0.0.1:8080"
    assert signing.verify(method, path, query, ours, body, {AK: SK}.get, now=NOW) is None


def test_unsigned_payload_for_multipart_bodies_matches_the_sdk():
    headers = {"Content-Type": "multipart/form-data; boundary=xyz", "X-Sdk-Content-Sha256": signing.UNSIGNED,
               "X-Sdk-Date": DATE}
    body = b"--xyz\r\ncontent\r\n--xyz--\r\n"
    ours = signing.sign("POST", "http://127.0.0.1:8080/v1/infers/abc", headers, body, AK, SK)
    assert ours["Authorization"] == sdk_authorization("POST", "/v1/infers/abc", [], headers, body)
    assert signing.verify("POST", "/v1/infers/abc", [], ours, body + b"changed", {AK: SK}.get, now=NOW) is None, \
        "an unsigned payload may change: only the headers are signed"


def test_verify_refuses_wrong_secret_tampering_and_stale_dates():
    headers = signing.sign("POST", "http://h/v1/p/models", {"X-Sdk-Date": DATE}, b'{"a": 1}', AK, SK)
    ok = {AK: SK}.get
    assert signing.verify("POST", "/v1/p/models", [], headers, b'{"a": 1}', ok, now=NOW) is None
    assert signing.verify("POST", "/v1/p/models", [], headers, b'{"a": 1}', {AK: "other"}.get, now=NOW) \
        == "signature mismatch"
    assert signing.verify("POST", "/v1/p/models", [], headers, b'{"a": 2}', ok, now=NOW) == "signature mismatch"
    assert signing.verify("POST", "/v1/p/models/x", [], headers, b'{"a": 1}', ok, now=NOW) == "signature mismatch"
    assert signing.verify("POST", "/v1/p/models", [("x", "1")], headers, b'{"a": 1}', ok, now=NOW) \
        == "signature mismatch"
    assert "15 minutes" in signing.verify("POST", "/v1/p/models", [], headers, b'{"a": 1}', ok,
                                          now=NOW + timedelta(minutes=20))
    assert signing.verify("POST", "/v1/p/models", [], {}, b"", ok) == "no SDK-HMAC-SHA256 Authorization header"
    assert signing.verify("POST", "/v1/p/models", [], headers, b'{"a": 1}', {}.get, now=NOW) == "unknown access key"


def test_errors_are_explained_without_secrets():
    auth = explain(401, "APIGW.0301", "verify aksk signature fail", "create training job x",
                   credentials="HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (profile 'cloud')")
    assert isinstance(auth, UserError) and "rejected the credentials" in str(auth)
    assert "HUAWEICLOUD_SDK_SK" in str(auth)
    flavor = explain(400, "ModelArts.2781", "FlavorNotFound", "create training job x")
    assert isinstance(flavor, UserError) and "train.flavor" in str(flavor)
    quota = explain(400, "ModelArts.2815", "ExceedQuotaLimit", "create training job x")
    assert isinstance(quota, UserError) and "quota" in str(quota) and "cleanup" in str(quota)
    bucket = explain(404, "NoSuchBucket", "The specified bucket does not exist", "upload")
    assert isinstance(bucket, MissingBucket) and "bucket:" in str(bucket)
    assert isinstance(explain(404, "ModelArts.3520", "gone", "service s"), NotFound)
    other = explain(503, None, "busy", "list models", request_id="r-1")
    assert isinstance(other, CloudError) and "r-1" in str(other) and "retries" in str(other)


def test_retry_backs_off_on_transient_errors_only():
    slept, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Transient(CloudError("busy"))
        return "ok"

    policy = Retry(attempts=4, base=0.5, cap=1.0, sleep=slept.append)
    assert policy.run(flaky, lambda e: isinstance(e, Transient)) == "ok"
    assert len(calls) == 3 and 0.5 <= slept[0] <= 0.75 and 1.0 <= slept[1] <= 1.5
    calls.clear()
    with pytest.raises(ValueError):
        policy.run(lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("bad")),
                   lambda e: isinstance(e, Transient))
    assert len(calls) == 1, "a permanent error is not retried"
    with pytest.raises(Transient):
        Retry(attempts=2, sleep=lambda s: None).run(lambda: (_ for _ in ()).throw(Transient(CloudError("x"))),
                                                    lambda e: True)
