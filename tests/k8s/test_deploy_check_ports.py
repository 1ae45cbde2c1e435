"""deploy-check's handling of its fixed workload ports, without containers: they are reserved from ephemeral
use for the run and the previous list restored, and an overlay waits for ports still held (TIME_WAIT of the
previous overlay's workloads) before starting, failing with their numbers when they stay held."""

from __future__ import annotations

import socket
import threading

import pytest

from deploy import check
from devtools.procs import free_port


def test_ports_are_reserved_for_the_run_and_the_old_list_restored(tmp_path, monkeypatch):
    sysctl = tmp_path / "ip_local_reserved_ports"
    sysctl.write_text("9999\n")
    monkeypatch.setattr(check, "RESERVED_PORTS", sysctl)
    with check.workload_ports_reserved((50051, 50052)):
        assert sysctl.read_text() == "9999,50051,50052"
    assert sysctl.read_text() == "9999"


def test_without_permission_the_run_goes_on_unreserved(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check, "RESERVED_PORTS", tmp_path / "missing" / "ip_local_reserved_ports")
    with check.workload_ports_reserved((50051,)):
        ran = True
    assert ran and "not reserved" in capsys.readouterr().out


def _held(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("0.0.0.0", port))
    sock.listen()
    return sock


def test_an_overlay_waits_for_a_port_still_held_then_goes_on():
    port = free_port()
    holder = _held(port)
    threading.Timer(0.5, holder.close).start()
    check.wait_until_ports_free((port,), timeout_s=30)
    assert not check.port_busy(port)


def test_a_port_that_stays_held_fails_the_check_by_number():
    port = free_port()
    with _held(port), pytest.raises(check.CheckFailed, match=str(port)):
        check.wait_until_ports_free((port,), timeout_s=1.5)


def test_only_a_listening_server_fails_the_run_at_once():
    """A clean clone's CI run failed once: right after `make test`, port 50052 was bound but nothing listened
    (a socket of the suite's services in TIME_WAIT, or a client given it as its local port). Only a server
    listening there (a `make run` stack) fails at once; a port that is only bound is waited for per overlay."""
    listening, bound = free_port(), free_port()
    server = _held(listening)
    only_bound = socket.socket()
    only_bound.bind(("0.0.0.0", bound))
    try:
        assert check.port_busy(bound)
        assert check.listened_on((listening, bound)) == [listening]
    finally:
        server.close()
        only_bound.close()
