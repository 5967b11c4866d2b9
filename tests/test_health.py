"""grpc.health.v1.Health (issue 27): serving, store or keys gone, shutting down; reflection off unless asked.

Every status is read over the wire, as a load balancer or a probe would: on
the mTLS port with an organisation's certificate, and on the plaintext
`--health` port with none.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gateway.transport import health as health_module
from gateway.transport.server import Gateway, build
from tests.conftest import Served
from tests.pg import PgServer

SERVICES = ["custos.v1.LenderService", "custos.v1.CaseService", "custos.v1.AuditService",
            "custos.v1.PacketService", "custos.v1.BureauService"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHANGE_S = 20.0  # a status follows the store within a probe interval (0.2 s here) and a bounded query
RECOVERY_S = 60.0  # psycopg_pool reconnects with a doubling delay (tests/test_postgres.py waits as long)


@pytest.fixture
def gw(env_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setattr(health_module, "HEALTH_EVERY_S", 0.2)
    g = build(env_dir / "data", "127.0.0.1:0", health_listen="127.0.0.1:0", workers=8)
    try:
        yield g
    finally:
        if not g.gate.stopping:
            g.stop(0)


def mtls(root: Path, port: int, org: str = "lender-a") -> grpc.Channel:
    ident = root / "ids" / org
    creds = grpc.ssl_channel_credentials((ident / "ca.crt").read_bytes(), (ident / "client.key").read_bytes(),
                                         (ident / "client.crt").read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{port}", creds)


def check(channel: grpc.Channel, service: str = "") -> int:
    return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=10).status)


def wait_for(read: Callable[[], int], status: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (seen := read()) != status:
        assert time.monotonic() < deadline, f"health stayed {seen}, not {status}, for {within} s"
        time.sleep(0.1)


def test_every_service_and_the_whole_are_serving_on_both_ports_and_no_call_is_audited(gw: Gateway,
                                                                                        env_dir: Path) -> None:
    events = gw.vault.audit.head()[0]
    with mtls(env_dir, gw.port) as secure, grpc.insecure_channel(f"127.0.0.1:{gw.health_port}") as plain:
        for name in ["", *SERVICES]:
            assert check(secure, name) == SERVING
            assert check(plain, name) == SERVING
        with pytest.raises(grpc.RpcError) as info:
            check(secure, "custos.v1.NoSuchService")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # The plaintext port serves Health and nothing else: no API call, no reflection.
        with pytest.raises(grpc.RpcError) as info:
            plain.unary_unary("/custos.v1.CaseService/GetCase")(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Health calls are neither refused nor audited as calls of the API (a disabled org's cert gets SERVING too).
    assert gw.vault.audit.head()[0] == events


@pytest.mark.postgresql_only
def test_postgresql_down_is_not_serving_until_it_is_back(gw: Gateway, env_dir: Path, pg_server: PgServer) -> None:
    with mtls(env_dir, gw.port) as secure, grpc.insecure_channel(f"127.0.0.1:{gw.health_port}") as plain:
        assert check(plain) == SERVING
        pg_server.pause()
        try:
            wait_for(lambda: check(plain), NOT_SERVING, CHANGE_S)
            for name in ["", *SERVICES]:
                assert check(secure, name) == NOT_SERVING
        finally:
            pg_server.resume()
        wait_for(lambda: check(plain), SERVING, RECOVERY_S)
        assert check(secure, SERVICES[0]) == SERVING


@pytest.mark.sqlite_only
def test_embedded_store_file_gone_is_not_serving_until_it_is_back(gw: Gateway, env_dir: Path) -> None:
    """An open SQLite file still answers after it was moved away (a volume unmounted, a file deleted or
    replaced under the gateway): health compares the file at its path with the one opened."""
    db = env_dir / "data" / "custos.db"
    with grpc.insecure_channel(f"127.0.0.1:{gw.health_port}") as plain:
        assert check(plain) == SERVING
        db.rename(db.with_name("moved.db"))
        try:
            wait_for(lambda: check(plain), NOT_SERVING, CHANGE_S)
            assert check(plain, "custos.v1.CaseService") == NOT_SERVING
        finally:
            db.with_name("moved.db").rename(db)
        wait_for(lambda: check(plain), SERVING, CHANGE_S)


def test_key_files_gone_is_not_serving_until_they_are_back(gw: Gateway, env_dir: Path) -> None:
    keys = env_dir / "data" / "keys"
    aside = env_dir / "keys-aside"
    aside.mkdir()
    with grpc.insecure_channel(f"127.0.0.1:{gw.health_port}") as plain:
        assert check(plain) == SERVING
        for kek in keys.glob("kek-*.key"):
            shutil.move(kek, aside / kek.name)
        try:
            wait_for(lambda: check(plain), NOT_SERVING, CHANGE_S)
        finally:
            for kek in aside.glob("kek-*.key"):
                shutil.move(kek, keys / kek.name)
        wait_for(lambda: check(plain), SERVING, CHANGE_S)


def test_shutting_down_is_not_serving_first_then_the_calls_drain(gw: Gateway, env_dir: Path) -> None:
    with mtls(env_dir, gw.port) as secure, grpc.insecure_channel(f"127.0.0.1:{gw.health_port}") as plain:
        watch = health_pb2_grpc.HealthStub(secure).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        # The open Watch is a call in flight: the stop waits its grace (2 s) for it, the drain a probe can see.
        stopper = threading.Thread(target=gw.stop, args=(2.0,))
        stopper.start()
        try:
            assert next(watch).status == NOT_SERVING  # told at once, before the drain
            assert check(plain) == NOT_SERVING
            assert check(plain, "custos.v1.LenderService") == NOT_SERVING
        finally:
            stopper.join(30)
        assert not stopper.is_alive()


# ------------------------------------------------------------------ reflection, through `custos serve`


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def data_copy(template_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "env"
    shutil.copytree(template_dir, dest)
    return dest


def _list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    return [s.name for s in response.list_services_response.service]


def test_reflection_is_off_by_default(data_copy: Path) -> None:
    served = Served(data_copy / "data")
    try:
        with mtls(data_copy, served.port) as secure:
            with pytest.raises(grpc.RpcError) as info:
                _list_services(secure)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert check(secure) == SERVING
    finally:
        served.stop()


def test_reflection_on_lists_the_services_and_a_client_built_from_it_calls_health(data_copy: Path) -> None:
    health_port = _free_port()
    served = Served(data_copy / "data", extra=["--reflection", "--health", f"127.0.0.1:{health_port}"])
    try:
        with mtls(data_copy, served.port) as secure:
            database = ProtoReflectionDescriptorDatabase(secure)
            services = set(database.get_services())
            assert {*SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
            # A generic client: nothing of Health's compiled stubs, only what reflection described.
            pool = descriptor_pool.DescriptorPool(database)
            method = pool.FindServiceByName("grpc.health.v1.Health").FindMethodByName("Check")
            request_type = message_factory.GetMessageClass(method.input_type)
            response_type = message_factory.GetMessageClass(method.output_type)
            call = secure.unary_unary("/grpc.health.v1.Health/Check", request_serializer=request_type.SerializeToString,
                                      response_deserializer=response_type.FromString)
            answer = call(request_type(service="custos.v1.CaseService"), timeout=10)
            assert method.output_type.fields_by_name["status"].enum_type.values_by_number[answer.status].name == \
                "SERVING"
            # The API's own messages are described as well (the map reflection hands out).
            assert pool.FindServiceByName("custos.v1.CaseService").FindMethodByName("GetCase") is not None
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plain:
            assert check(plain) == SERVING
            with pytest.raises(grpc.RpcError) as info:
                _list_services(plain)  # never on the plaintext port
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        served.stop()


def test_processes_share_the_health_port_and_each_answers(data_copy: Path) -> None:
    health_port = _free_port()
    served = Served(data_copy / "data", extra=["--processes", "2", "--health", f"127.0.0.1:{health_port}"])
    try:
        for _ in range(4):  # new connections, spread by the kernel over the processes
            with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plain:
                assert check(plain) == SERVING
        with mtls(data_copy, served.port) as secure:
            assert check(secure, "custos.v1.BureauService") == SERVING
    finally:
        served.stop()
