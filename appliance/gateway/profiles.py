"""Charging profiles a backend sent for a connector behind the gateway (charging-manager.md §4.3).

They are never forwarded: the box's profiles have one owner, the appliance. They are recorded here,
turned into a limit in amperes, and the box gets min(backend limit, local share): `effective_limit`
is the one place that rule is written. GetCompositeSchedule is answered from this record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

TX_DEFAULT, TX, STATION_MAX = "TxDefaultProfile", "TxProfile", "ChargePointMaxProfile"


def effective_limit(local_share: float, backend_limit: float | None) -> float:
    """What a box behind a backend may get: the local share, never more than the backend allows."""
    return local_share if backend_limit is None else min(local_share, backend_limit)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Profile:
    connector: int
    profile_id: int
    stack_level: int
    purpose: str
    schedule: dict[str, Any]

    def limit_a(self, now: datetime, voltage: float) -> float | None:
        """The limit in effect now, in A per phase (None: the schedule has not begun or has ended)."""
        periods = sorted(self.schedule.get("chargingSchedulePeriod") or [], key=lambda p: float(p["startPeriod"]))
        if not periods:
            return None
        start = _parse_time(self.schedule.get("startSchedule"))
        elapsed = (now - start).total_seconds() if start is not None else 0.0
        duration = self.schedule.get("duration")
        if elapsed < float(periods[0]["startPeriod"]) or (duration is not None and elapsed >= float(duration)):
            return None
        period = [p for p in periods if float(p["startPeriod"]) <= elapsed][-1]
        limit = float(period["limit"])
        if self.schedule.get("chargingRateUnit") == "W":
            limit /= voltage * float(period.get("numberPhases") or 3)
        return limit


class BackendProfiles:
    """The backend's profiles for one station, by connector (0 = the whole station)."""

    def __init__(self) -> None:
        self.profiles: dict[int, Profile] = {}

    def set(self, connector: int, cs_profile: dict[str, Any]) -> None:
        p = Profile(connector, int(cs_profile["chargingProfileId"]), int(cs_profile["stackLevel"]),
                    str(cs_profile["chargingProfilePurpose"]), _plain(cs_profile["chargingSchedule"]))
        for pid, old in list(self.profiles.items()):   # same purpose + level on a connector: replaced
            if old.connector == connector and old.purpose == p.purpose and old.stack_level == p.stack_level:
                del self.profiles[pid]
        self.profiles[p.profile_id] = p

    def clear(self, request: dict[str, Any]) -> bool:
        """ClearChargingProfile's filters (all optional); True when something was cleared."""
        def matches(p: Profile) -> bool:
            if request.get("id") is not None:
                return p.profile_id == int(request["id"])
            return ((request.get("connectorId") is None or p.connector == int(request["connectorId"]))
                    and (request.get("chargingProfilePurpose") is None or p.purpose == request["chargingProfilePurpose"])
                    and (request.get("stackLevel") is None or p.stack_level == int(request["stackLevel"])))
        gone = [pid for pid, p in self.profiles.items() if matches(p)]
        for pid in gone:
            del self.profiles[pid]
        return bool(gone)

    def limit(self, connector: int, voltage: float, now: datetime | None = None) -> float | None:
        """The backend's limit for `connector` now in A (None = no limit): the highest stack level of
        TxProfile, else of TxDefaultProfile (the connector's before the station's), capped by the
        station maximum."""
        now = now or datetime.now(timezone.utc)

        def top(purpose: str, connectors: tuple[int, ...]) -> float | None:
            for c in connectors:
                found = sorted((p for p in self.profiles.values() if p.purpose == purpose and p.connector == c),
                               key=lambda p: -p.stack_level)
                for p in found:
                    value = p.limit_a(now, voltage)
                    if value is not None:
                        return value
            return None

        tx = top(TX, (connector,))
        if tx is None:
            tx = top(TX_DEFAULT, (connector, 0))
        cap = top(STATION_MAX, (0,))
        limits = [v for v in (tx, cap) if v is not None]
        return min(limits) if limits else None

    def composite(self, connector: int, duration: int, voltage: float, unit: str | None) -> dict[str, Any]:
        """GetCompositeSchedule's answer from the record: one period with the limit in effect now."""
        limit = self.limit(connector, voltage)
        if limit is None:
            return {"status": "Rejected"}
        now = datetime.now(timezone.utc)
        rate = unit or "A"
        value = limit if rate == "A" else math.floor(limit * voltage * 3)
        return {"status": "Accepted", "connectorId": connector,
                "scheduleStart": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "chargingSchedule": {"duration": duration, "chargingRateUnit": rate,
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(value)}]}}

    def to_json(self) -> list[dict[str, Any]]:
        return [p.__dict__ for p in self.profiles.values()]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]] | None) -> "BackendProfiles":
        out = cls()
        for d in data or []:
            out.profiles[int(d["profile_id"])] = Profile(**d)
        return out


def _plain(value: Any) -> Any:
    """Decimals from the RPC core as plain JSON numbers, so the record can be stored."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return float(value)
    return value
