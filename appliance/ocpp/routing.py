"""Per-station routing of the CALLs a wallbox sends, as data: for each action, answer it locally,
relay it to the station's backend and answer with what the backend said, or answer locally and
mirror it to the backend.

The router runs inside the station's receive loop, so a relayed CALL is answered before the next
one is read (OCPP's one-call-at-a-time order). The relay side (the gateway) decides how long a backend
may take: when it cannot answer, the call is answered locally instead, so a dead backend never blocks
a wallbox.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Callable, Mapping, Protocol

from appliance.ocpp.errors import OcppError
from appliance.ocpp.rpc import Answer, Message, RawPayload

if TYPE_CHECKING:
    from appliance.ocpp.stations import Station


class Route(enum.Enum):
    LOCAL = "local"      # answered by the appliance only
    RELAY = "relay"      # the backend answers; the appliance observes its answer
    MIRROR = "mirror"    # the appliance answers; the backend gets a copy


class RouteTable:
    """action -> Route; anything not named is answered locally."""

    def __init__(self, routes: Mapping[str, Route] | None = None):
        self.routes = dict(routes or {})

    def route(self, action: str) -> Route:
        return self.routes.get(action, Route.LOCAL)


LOCAL_ONLY = RouteTable()


class Relay(Protocol):
    """What the gateway offers a relayed station."""

    def relay(self, station: "Station", msg: Message) -> RawPayload | None:
        """The backend's answer to `msg`, or None when the backend cannot answer now."""

    def mirror(self, station: "Station", msg: Message, answer: Answer) -> None:
        """`msg` was answered locally with `answer`; give the backend its copy (must not block)."""

    def id_tag_status(self, station: "Station", id_tag: str) -> str:
        """The idTagInfo status to answer locally: what the backend said of the tag, or offline_auth."""


LocalHandler = Callable[["Station", Message, RawPayload | None], Answer]


class Router:
    """Dispatches one station's CALLs: `local[action](station, msg, backend_answer)` answers locally or
    observes the backend's answer (backend_answer is then not None; it returns what to answer)."""

    def __init__(self, local: Mapping[str, LocalHandler]):
        self.local = local

    def dispatch(self, station: "Station", msg: Message) -> Answer:
        action = msg.action or ""
        handler = self.local.get(action)
        if handler is None:
            raise OcppError("NotSupported", f"{action} is not supported here")
        route = station.routes.route(action)
        relay = station.relay
        if relay is None or route is Route.LOCAL:
            return handler(station, msg, None)
        if route is Route.RELAY:
            backend = relay.relay(station, msg)
            return handler(station, msg, backend)
        answer = handler(station, msg, None)
        relay.mirror(station, msg, answer)
        return answer
