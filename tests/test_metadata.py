"""Oversized request metadata (issue 22, finding 8).

About 20 KB of metadata (over limits.toml's max_metadata_bytes, 16 KiB) used
to be refused by gRPC core itself, with its own status text and at random
between its soft and hard limits, while our handler found the call ended,
returned None, and gRPC logged a Python traceback serializing it, per call.
Now the gate refuses it first (gRPC core's limit sits above the policy's) with
METADATA_TOO_LARGE, audited; beyond core's own limit the refusal is core's
RESOURCE_EXHAUSTED, still without a traceback.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from custos_client import CustosClientError
from custos_client.v1 import custos_pb2 as pb
from custos_client.v1 import custos_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.transport.server import core_metadata_limit
from tests.conftest import Env, channel

POLICY_LIMIT = 16 * 1024  # policies/limits.toml max_metadata_bytes


def no_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    captured = capfd.readouterr()
    assert "Traceback" not in caplog.text and "Traceback" not in captured.err and "Traceback" not in captured.out
    assert "Exception serializing" not in caplog.text


@pytest.mark.parametrize("size", [20_000, 100_000])
def test_oversized_metadata_is_a_stable_audited_refusal_without_a_traceback(
        seeded: Env, size: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    agency = seeded.client("agency-1")
    for _ in range(3):  # every call, not by chance (gRPC core refused at random between its two limits)
        with pytest.raises(CustosClientError) as info:
            agency.get_case("C-1", "collection", metadata=[("x-padding", "a" * size)])
        assert (info.value.code, info.value.status) == ("METADATA_TOO_LARGE", "RESOURCE_EXHAUSTED")
    # A streaming call is refused the same way.
    stub = pb_grpc.CaseServiceStub(channel(seeded, "agency-1"))
    with pytest.raises(grpc.RpcError) as raw:
        list(stub.PullCases(pb.PullCasesRequest(purpose="collection"), metadata=[("x-padding", "a" * size)],
                            timeout=20))
    assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(raw.value)
    assert status is not None
    reasons = []
    for detail in status.details:
        info_ = error_details_pb2.ErrorInfo()
        if detail.Unpack(info_):
            reasons.append(info_.reason)
    assert reasons == ["METADATA_TOO_LARGE"]
    refused = [e for e in seeded.events(org="agency-1") if e.code == "METADATA_TOO_LARGE"]
    assert [e.method for e in refused] == ["GetCase"] * 3 + ["PullCases"]
    assert all(e.decision == "deny" for e in refused)
    # Metadata under the limit still works, on the same client.
    assert agency.get_case("C-1", "collection", metadata=[("x-padding", "a" * 8_000)]).case_id == "C-1"
    no_traceback(caplog, capfd)


def test_metadata_beyond_grpc_cores_own_limit_is_refused_without_a_traceback(
        seeded: Env, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    size = core_metadata_limit(POLICY_LIMIT) + 10_000
    agency = seeded.client("agency-1")
    for _ in range(3):
        with pytest.raises(CustosClientError) as info:
            agency.get_case("C-1", "collection", metadata=[("x-padding", "a" * size)])
        assert info.value.status == "RESOURCE_EXHAUSTED"
    assert agency.get_case("C-1", "collection").case_id == "C-1"
    no_traceback(caplog, capfd)
