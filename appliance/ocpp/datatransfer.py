"""DataTransfer from stations, answered per vendorId and messageId (OCPP 1.6 §4.3).

A route table maps (vendorId, messageId) to a handler; messageId None is the vendor's catch-all.
What the answer means (1.6): a vendor we have no route for gets UnknownVendorId, a known vendor with
a message we have no route for gets UnknownMessageId. Vendors listed in `[ocpp_server]
data_transfer_accept` (e.g. a card terminal's) are accepted and kept in the event log, so their data
is not rejected outright while nothing relays it yet; the gateway registers relaying routes here.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger("ampgate.ocpp")

# (charge box id, DataTransfer payload) -> DataTransfer.conf payload
Route = Callable[[str, dict[str, Any]], dict[str, Any]]
ROUTES: dict[tuple[str, str | None], Route] = {}
SHOWN_DATA = 200   # characters of `data` kept in the event log


def register(vendor_id: str, message_id: str | None, route: Route) -> None:
    """Answer DataTransfer from `vendor_id` (and `message_id`, None = any) with `route`."""
    ROUTES[(vendor_id, message_id)] = route


def accepted_vendors(setting: str) -> set[str]:
    """`data_transfer_accept` as a set of vendorIds (separated by spaces)."""
    return set(setting.split())


def answer(cpid: str, payload: dict[str, Any], accept: set[str], events: Any) -> dict[str, Any]:
    vendor, message = str(payload.get("vendorId", "")), payload.get("messageId")
    route = ROUTES.get((vendor, message)) or ROUTES.get((vendor, None))
    if route is not None:
        return route(cpid, payload)
    if vendor in accept:
        data = str(payload.get("data", ""))
        events.info(f"DataTransfer from {vendor} ({str(message)[:50]}) accepted: {data[:SHOWN_DATA]}"
                    f"{'…' if len(data) > SHOWN_DATA else ''}", cpid)
        return {"status": "Accepted"}
    known_vendor = any(v == vendor for v, _ in ROUTES)
    log.info("%s: DataTransfer from vendor %.60r (message %.60r): %s", cpid, vendor, message,
             "no route for this message" if known_vendor else "vendor not accepted (data_transfer_accept)")
    return {"status": "UnknownMessageId" if known_vendor else "UnknownVendorId"}
