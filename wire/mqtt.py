"""Building aiomqtt clients from :class:`kwatt.wire.settings.MqttConfig`: TLS, credentials, sessions.

One place for what every MQTT speaker of kwatt (agent, ingest, live view, demo) needs, so TLS and
credentials are handled the same everywhere. Secrets are read from files or the environment when a
client is built and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kwatt.wire.settings import ConfigError, MqttConfig

__all__ = [
    "NOT_AUTHORIZED",
    "NO_MATCHING_SUBSCRIBERS",
    "REFUSED_FOR_GOOD",
    "Backoff",
    "Client",
    "cert_common_name",
    "check_node_identity",
    "make_client",
    "tls_context",
]

log = logging.getLogger("kwatt.mqtt")

#: MQTT 5 PUBACK reason code 0x10: the broker accepted the message but no subscription matched it,
#: so nobody will ever receive it (MQTT 5.0 §3.4.2.1). Mosquitto 2.0 sends it.
NO_MATCHING_SUBSCRIBERS = 0x10

#: MQTT 5 PUBACK reason codes by which the broker refuses a message for good (MQTT 5.0
#: §3.4.2.1): resending it cannot succeed. 0x87 Not authorized (an ACL denial: Mosquitto 2.0 sends
#: it, then closes the connection), 0x90 Topic Name invalid, 0x95 Packet too large (Mosquitto's
#: message_size_limit), 0x99 Payload format invalid.
NOT_AUTHORIZED = 0x87
REFUSED_FOR_GOOD = frozenset({0x87, 0x90, 0x95, 0x99})

#: MQTT 5 session expiry for persistent sessions: the broker keeps the session (and the QoS 1 messages
#: queued for it) for a week while the client is away.
SESSION_EXPIRY_S = 7 * 24 * 3600


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """An SSL context verifying the broker against ``tls.ca_file`` (or the system CAs), or None."""
    if not cfg.use_tls:
        return None
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=tls.ca_file if tls else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls and tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls and tls.insecure_skip_hostname:
        ctx.check_hostname = False
    return ctx


def cert_common_name(path: str) -> str:
    """The subject commonName of the PEM certificate in ``path``.

    Uses CPython's ``ssl._ssl._test_decode_cert`` (the decoder behind ``SSLSocket.getpeercert``;
    present since Python 2.7/3.2, used by CPython's own test suite) so no extra dependency is needed.
    """
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        raise ConfigError(f"{path}: this Python cannot decode certificates (no _test_decode_cert)")
    try:
        info = decode(path)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"mqtt.tls.cert_file: cannot read certificate {path}: {e}") from None
    for rdn in info.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    raise ConfigError(f"mqtt.tls.cert_file: certificate {path} has no subject CN")


def check_node_identity(cfg: MqttConfig, node: str) -> None:
    """With a client certificate, its CN is the node's identity at the broker
    (``use_identity_as_username``, mosquitto.conf(5)) and the ACL lets it write only
    ``kwatt/v1/+/<CN>/...``: refuse to start when the configured ``node`` differs, since every batch
    would be dropped by the broker. A username that differs from ``node`` gets a warning."""
    if cfg.tls is not None and cfg.tls.cert_file:
        cn = cert_common_name(cfg.tls.cert_file)
        if cn != node:
            raise ConfigError(
                f"mqtt.tls.cert_file: certificate {cfg.tls.cert_file} is for CN={cn!r} but this "
                f"agent's node is {node!r}; the broker would refuse its topics"
            )
    elif cfg.username is not None and cfg.username != node:
        log.warning(
            "mqtt.username %r differs from node %r: with the per-node ACL "
            "(deploy/mosquitto/acl) the broker drops this agent's messages",
            cfg.username,
            node,
        )


class Client(aiomqtt.Client):
    """aiomqtt's client plus :meth:`publish_acked`, which returns the PUBACK's reason code.

    aiomqtt 2.5 drops the reason code of a PUBACK; kwatt needs it to tell "stored by the broker for a
    subscriber" from "accepted and discarded: no matching subscribers". This uses two private members
    of aiomqtt 2.x (``_pending_call``, ``_wait_for``), pinned by ``aiomqtt>=2.5,<3`` and covered by
    tests/system/test_pipeline.py.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._puback_reasons: dict[int, int] = {}

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._puback_reasons[mid] = int(reason_code.value)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_acked(self, topic: str, payload: bytes, qos: int) -> int:
        """Publish and wait for the broker's acknowledgement (QoS 1); return the reason code
        (0 = success; :data:`NO_MATCHING_SUBSCRIBERS`; always 0 under MQTT 3.1.1 and QoS 0)."""
        info = self._client.publish(topic, payload, qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=None)
        return self._puback_reasons.pop(info.mid, 0)


def make_client(
    cfg: MqttConfig,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    persistent: bool = False,
    logger: logging.Logger | None = None,
    max_inflight: int | None = None,
) -> Client:
    """An aiomqtt client for ``cfg``. ``persistent`` keeps the broker-side session across reconnects
    (MQTT 3.1.1 ``clean_session=False``; MQTT 5 ``clean_start=False`` with a session expiry)."""
    v5 = cfg.protocol == 5
    properties = None
    kwargs: dict[str, Any] = {}
    if v5:
        kwargs["protocol"] = aiomqtt.ProtocolVersion.V5
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs["clean_start"] = False
    else:
        kwargs["protocol"] = aiomqtt.ProtocolVersion.V311
        kwargs["clean_session"] = not persistent
    client = Client(
        cfg.host,
        cfg.port,
        identifier=identifier,
        username=cfg.username,
        password=cfg.password(),
        will=will,
        keepalive=max(1, int(cfg.keepalive_s)),
        timeout=cfg.connect_timeout_s,
        tls_context=tls_context(cfg),
        properties=properties,
        logger=logger,
        max_inflight_messages=max_inflight,
        **kwargs,
    )
    # aiomqtt logs a warning on every publish once more than 10 are pending (aiomqtt 2.5
    # client.py, pending_calls_threshold).
    client.pending_calls_threshold = 10**9
    return client


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s, self.max_s = min_s, max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        cap = min(self.max_s, self.min_s * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return self.min_s / 2 + self._rng.uniform(0, max(cap - self.min_s / 2, 0.0))
