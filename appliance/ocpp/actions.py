"""Which 1.6 action may be sent by whom (ocpp16.md §6), so a CALL the wrong way round is answered
NotSupported (known, not for us) rather than NotImplemented (not an action at all)."""
from __future__ import annotations

from enum import Enum

CP = "cp"   # charge point: the station (or we, as a gateway/wallbox client)
CS = "cs"   # central system: we, towards the site's stations

SENT_BY_CP = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "Heartbeat", "MeterValues", "StartTransaction",
    "StatusNotification", "StopTransaction", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    # security whitepaper
    "SecurityEventNotification", "SignCertificate", "LogStatusNotification", "SignedFirmwareStatusNotification",
})
SENT_BY_CS = frozenset({
    "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
    "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector", "GetDiagnostics",
    "UpdateFirmware", "GetLocalListVersion", "SendLocalList", "ReserveNow", "CancelReservation",
    "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule", "TriggerMessage",
    # security whitepaper
    "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage", "GetInstalledCertificateIds",
    "GetLog", "InstallCertificate", "SignedUpdateFirmware",
})


def sent_by(role: str) -> frozenset[str]:
    return SENT_BY_CP if role == CP else SENT_BY_CS


class Status(str, Enum):
    """Connector statuses of StatusNotification."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EVSE = "SuspendedEVSE"
    SUSPENDED_EV = "SuspendedEV"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


# measurands we read for load management
CURRENT_IMPORT = "Current.Import"
CURRENT_OFFERED = "Current.Offered"
POWER_IMPORT = "Power.Active.Import"
ENERGY_REGISTER = "Energy.Active.Import.Register"
