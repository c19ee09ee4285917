"""sellervault.network: which addresses may reach the service, and who the client is behind a
trusted proxy. The attacker writes X-Forwarded-For headers of their choosing, connects over
IPv6 with a mapped IPv4 address, and hopes a sloppy allowlist is wider than it reads."""

from __future__ import annotations

import ipaddress

import pytest

from sellervault.config import ConfigError, load_settings
from sellervault.network import (
    LOOPBACK,
    NetworkGate,
    Networks,
    NetworkSettingError,
    client_address,
    normalise,
    parse_networks,
)

PROXIES = Networks.parse("10.0.0.0/8")


def _xff(*values: str) -> list[bytes]:
    return [value.encode() for value in values]


def test_an_ipv4_mapped_ipv6_address_is_the_ipv4_address() -> None:
    assert normalise("::ffff:192.0.2.7") == "192.0.2.7"
    assert normalise("::FFFF:127.0.0.1") == "127.0.0.1"
    assert ipaddress.ip_address("127.0.0.1") in Networks.parse(LOOPBACK)
    assert normalise("2001:db8::1") == "2001:db8::1"
    assert normalise("2001:0db8:0000::0001") == "2001:db8::1"  # one written form


@pytest.mark.parametrize("text", ["", "localhost", "999.1.1.1", "fe80::1%eth0", "1.2.3.4:80",
                                  "unknown", "_hidden"])
def test_what_is_not_an_address_is_none(text: str) -> None:
    assert normalise(text) is None


def test_a_mapped_network_is_its_ipv4_network() -> None:
    [network] = parse_networks("::ffff:10.0.0.0/104")
    assert str(network) == "10.0.0.0/8"


@pytest.mark.parametrize("text", ["10.0.0.1/8", "10.0.0.0/33", "not-a-network", "10.0.0.0/8,x"])
def test_a_malformed_or_sloppy_network_is_refused(text: str) -> None:
    with pytest.raises(NetworkSettingError) as raised:
        parse_networks(text)
    assert "x" not in str(raised.value).replace("e.g.", "")  # the entry is not echoed


def test_the_default_allowlist_is_loopback_only() -> None:
    settings = load_settings()
    gate = NetworkGate(Networks.parse(settings.allowed_networks),
                       Networks.parse(settings.trusted_proxies))
    assert gate.loopback_only
    assert gate.admit("127.0.0.1", []) is not None
    assert gate.admit("::1", []) is not None
    assert gate.admit("::ffff:127.0.0.1", []) is not None
    assert gate.admit("192.0.2.1", []) is None
    assert not Networks.parse(settings.trusted_proxies)


@pytest.mark.parametrize(("name", "value"), [("allowed_networks", "10.0.0.1/8"),
                                             ("allowed_networks", ""),
                                             ("trusted_proxies", "everyone")])
def test_a_bad_network_setting_refuses_to_start_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(**{name: value})


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert str(client_address("192.0.2.50", _xff("127.0.0.1"), PROXIES)) == "192.0.2.50"
    assert str(client_address("192.0.2.50", _xff("127.0.0.1"), Networks(()))) == "192.0.2.50"


def test_a_trusted_proxy_names_the_client_it_forwards_for() -> None:
    assert str(client_address("10.0.0.2", _xff("203.0.113.9"), PROXIES)) == "203.0.113.9"
    assert str(client_address("10.0.0.2", [], PROXIES)) == "10.0.0.2"


def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() -> None:
    """The client prepends what it likes; only what trusted proxies appended is believed."""
    chain = _xff("127.0.0.1, 198.51.100.4", "203.0.113.9, 10.1.2.3")
    assert str(client_address("10.0.0.2", chain, PROXIES)) == "203.0.113.9"
    assert str(client_address("10.0.0.2", _xff("10.9.9.9, 10.8.8.8"), PROXIES)) == "10.9.9.9"


@pytest.mark.parametrize("chain", ["unknown", "203.0.113.9, garbage", ", ", "::ffff:zz"])
def test_a_hop_that_is_not_an_address_leaves_no_client(chain: str) -> None:
    assert client_address("10.0.0.2", _xff(chain), PROXIES) is None


def test_a_mapped_hop_is_its_ipv4_address() -> None:
    address = client_address("::ffff:10.0.0.2", _xff("::ffff:203.0.113.9"), PROXIES)
    assert str(address) == "203.0.113.9"


def test_an_address_outside_the_allowlist_is_refused_after_the_proxy_is_believed() -> None:
    gate = NetworkGate(Networks.parse("203.0.113.0/24"), PROXIES)
    assert str(gate.admit("10.0.0.2", _xff("203.0.113.9"))) == "203.0.113.9"
    assert gate.admit("10.0.0.2", _xff("198.51.100.1")) is None
    assert gate.admit("10.0.0.2", []) is None  # the proxy itself is not allowed
    assert gate.admit("203.0.113.5", _xff("10.0.0.1")) is not None  # ignored: untrusted peer
