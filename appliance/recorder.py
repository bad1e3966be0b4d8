"""Stores what devices report, then announces it: the one way a session reaches SQLite.

`record(event)` commits the local record and, in the same SQLite transaction, the outbox rows the
registered rules ask for (the gateway's messages for a backend), and only then publishes the event on
the bus. So a wallbox is answered, and load management and the gateway hear of it, only once it is on
disk together with everything that must follow from it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, overload

from appliance.domain import (DomainEvent, EventBus, Identified, MeterSampled, StatusChanged, TransactionStarted,
                              TransactionStopped)
from appliance.store import OutboxRow, Store

OutboxRule = Callable[[DomainEvent], list[OutboxRow]]


class Recorder:
    def __init__(self, store: Store, bus: EventBus):
        self.store = store
        self.bus = bus
        self.outbox_rules: list[OutboxRule] = []

    def _outbox(self, event: DomainEvent) -> list[OutboxRow]:
        return [row for rule in self.outbox_rules for row in rule(event)]

    @overload
    def record(self, event: TransactionStarted) -> TransactionStarted: ...
    @overload
    def record(self, event: TransactionStopped) -> TransactionStopped: ...
    @overload
    def record(self, event: MeterSampled) -> MeterSampled: ...
    @overload
    def record(self, event: Identified) -> Identified: ...
    @overload
    def record(self, event: StatusChanged) -> StatusChanged: ...

    def record(self, event: DomainEvent) -> DomainEvent:
        """Persist `event` (with its outbox rows), publish it, and return it with what the store
        decided filled in (a start's transaction id, a stop's outcome)."""
        o = event.origin
        if isinstance(event, TransactionStarted):
            tx_id, created = self.store.start_transaction(
                connector=o.connector, id_tag=event.id_tag, meter_start=event.meter_start, start_time=event.timestamp,
                device=o.device, charge_box_id=o.station, source=o.source, dedup_key=event.dedup_key,
                outbox=self._outbox(event))
            event = dataclasses.replace(event, tx_id=tx_id, repeated=not created)
        elif isinstance(event, TransactionStopped):
            outcome = self.store.stop_transaction(
                event.tx_id, meter_stop=event.meter_stop, stop_time=event.timestamp, reason=event.reason,
                charge_box_id=o.station, device=o.device, samples=event.samples, connector=o.connector,
                outbox=self._outbox(event))
            event = dataclasses.replace(event, outcome=outcome)
        elif isinstance(event, MeterSampled):
            self.store.add_meter_values(event.samples, tx_id=event.tx_id, device=o.device, charge_box_id=o.station,
                                        connector=o.connector, outbox=self._outbox(event))
        elif isinstance(event, Identified) and event.raw is not None:
            self.store.put_state(f"station:{o.station}", "boot_raw", event.raw)
        self.bus.publish(event)
        return event
