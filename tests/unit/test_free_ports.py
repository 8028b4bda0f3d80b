"""Ports for a local broker's listeners come out distinct (streams/local/ports.py): a Kafka
given one port for its client and controller listeners refuses to start (seen once in a
fresh-clone CI run, two free_port() calls in a row got the same port)."""

from __future__ import annotations

from phaseflow.streams.local.ports import free_ports, port_open


def test_ports_picked_together_are_distinct_and_free() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    assert not any(port_open("127.0.0.1", port) for port in ports)


def test_ports_the_caller_named_are_never_picked() -> None:
    # A port just released (the one given for a listener) is the one the OS may hand out next.
    given = free_ports(1)[0]
    for _ in range(50):
        assert given not in free_ports(3, besides=[given])
