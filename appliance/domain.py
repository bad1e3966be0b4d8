"""What happened at a charge point, as plain facts, and the in-process bus that announces them.

Devices (OCPP connectors and Power Brain boxes alike) describe their sessions with these events. The
recorder (appliance.recorder) stores the ones that must survive a restart and only then announces them
here; load management and the gateway subscribe. Subscribers run synchronously in the publisher's
greenlet, in subscription order: they must be quick (set a flag, wake a greenlet) and never block.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from appliance.store import MeterSample

log = logging.getLogger("ampgate.bus")


@dataclass(frozen=True)
class Origin:
    """Where an event comes from: the configured device (None for an unconfigured station), the
    station identity (chargeBoxId, or the Modbus port of a Power Brain box) and its connector."""

    device: str | None
    station: str
    connector: int
    source: str = "ocpp"                  # ocpp | powerbrain


@dataclass(frozen=True)
class Identified:
    """A station said who it is (BootNotification, or a Power Brain box's identification block)."""

    origin: Origin
    vendor: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    raw: str | None = None                # the BootNotification payload exactly as received


@dataclass(frozen=True)
class StatusChanged:
    origin: Origin
    status: str                           # OCPP connector status (Available, Charging, ...)
    error_code: str = "NoError"
    info: str = ""
    timestamp: str | None = None
    raw: str | None = None


@dataclass(frozen=True)
class TransactionStarted:
    origin: Origin
    id_tag: str
    meter_start: int
    timestamp: str
    dedup_key: str | None = None          # the same start again maps to the same transaction
    reservation_id: int | None = None
    raw: str | None = None
    tx_id: int | None = None              # filled in by the recorder
    repeated: bool = False                # ... True when this start was recorded before


@dataclass(frozen=True)
class TransactionStopped:
    origin: Origin
    tx_id: int
    meter_stop: int
    timestamp: str
    reason: str | None = None
    id_tag: str | None = None
    samples: list[MeterSample] = field(default_factory=list)   # transactionData
    raw: str | None = None
    outcome: str = ""                     # filled in by the recorder: stopped | duplicate | orphan


@dataclass(frozen=True)
class MeterSampled:
    origin: Origin
    tx_id: int | None
    samples: list[MeterSample]
    raw: str | None = None


DomainEvent = Identified | StatusChanged | TransactionStarted | TransactionStopped | MeterSampled
E = TypeVar("E")


class EventBus:
    """Subscribers per event type. A subscriber that raises is logged and the others still run."""

    def __init__(self) -> None:
        self._subscribers: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], fn: Callable[[E], None]) -> None:
        self._subscribers[kind].append(fn)

    def unsubscribe(self, kind: type[E], fn: Callable[[E], None]) -> None:
        if fn in self._subscribers[kind]:
            self._subscribers[kind].remove(fn)

    def publish(self, event: DomainEvent) -> None:
        for fn in list(self._subscribers.get(type(event), ())):
            try:
                fn(event)
            except Exception:
                log.exception("%s subscriber %r failed", type(event).__name__, fn)
