"""The charging profiles a simulated station holds, with the 1.6 stacking rules (ocpp16.md §8),
reduced to what a snapshot needs: the limit in effect now, per connector."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOMINAL_VOLTAGE = 230.0


@dataclass
class Held:
    connector: int
    profile: dict[str, Any]

    @property
    def purpose(self) -> str:
        return self.profile["chargingProfilePurpose"]

    @property
    def stack(self) -> int:
        return int(self.profile["stackLevel"])

    @property
    def id(self) -> int:
        return int(self.profile["chargingProfileId"])

    def limit_a(self) -> float:
        """Current per phase of the first period (our profiles have one); W converted at 230 V."""
        sched = self.profile["chargingSchedule"]
        period = sched["chargingSchedulePeriod"][0]
        limit = float(period["limit"])
        if sched["chargingRateUnit"] == "W":
            limit /= NOMINAL_VOLTAGE * int(period.get("numberPhases", 3))
        return limit


class ProfileStore:
    def __init__(self) -> None:
        self.held: list[Held] = []

    def set(self, connector: int, profile: dict[str, Any], has_transaction: bool) -> str:
        purpose = profile["chargingProfilePurpose"]
        if purpose == "ChargePointMaxProfile" and connector != 0:
            return "Rejected"
        if purpose == "TxProfile" and (connector == 0 or not has_transaction):
            return "Rejected"
        new = Held(connector, profile)
        self.held = [h for h in self.held if not (
            h.id == new.id or (h.connector == connector and h.purpose == purpose and h.stack == new.stack))]
        self.held.append(new)
        return "Accepted"

    def clear(self, req: dict[str, Any]) -> str:
        def matches(h: Held) -> bool:
            if "id" in req and req["id"] is not None:
                return h.id == int(req["id"])
            if req.get("connectorId") is not None and h.connector != int(req["connectorId"]):
                return False
            if req.get("chargingProfilePurpose") and h.purpose != req["chargingProfilePurpose"]:
                return False
            if req.get("stackLevel") is not None and h.stack != int(req["stackLevel"]):
                return False
            return True
        before = len(self.held)
        self.held = [h for h in self.held if not matches(h)]
        return "Accepted" if len(self.held) < before else "Unknown"

    def clear_tx_profiles(self, connector: int) -> None:
        """A TxProfile ends with its transaction."""
        self.held = [h for h in self.held if not (h.connector == connector and h.purpose == "TxProfile")]

    def _top(self, purpose: str, connector: int) -> Held | None:
        cands = [h for h in self.held if h.purpose == purpose and h.connector == connector]
        return max(cands, key=lambda h: h.stack) if cands else None

    def limit(self, connector: int) -> float | None:
        """Composite limit now in A per phase; None = no limit at all."""
        tx = self._top("TxProfile", connector) or self._top("TxDefaultProfile", connector) \
            or self._top("TxDefaultProfile", 0)
        cp_max = self._top("ChargePointMaxProfile", 0)
        limits = [h.limit_a() for h in (tx, cp_max) if h is not None]
        return min(limits) if limits else None

    def describe(self) -> list[dict[str, Any]]:
        return [{"connector": h.connector, "purpose": h.purpose, "stack": h.stack, "id": h.id,
                 "limit_a": round(h.limit_a(), 1)} for h in self.held]
