"""Plain data in and out of the allocation engine. No I/O, no clocks: `now` is passed in.

Conventions: currents in A per phase; building phases are indexed 0..2 (L1..L3). A wallbox's box
phase i is on building phase (i + rotation/120) mod 3. The engine may add fields here (with
defaults) but the names below are the contract with devices and the controller.
"""
from __future__ import annotations

from dataclasses import dataclass, field

Phases3 = tuple[float, float, float]

# A box drawing (or offering the car) more than its command for this long is counted at its maximum
# possible draw: part of the contract, because devices judge Current.Offered by it too.
OVERDRAW_AFTER_S = 10.0


@dataclass(frozen=True)
class Site:
    """Global limits (charging-manager.md §2.2)."""

    max_current_per_phase: float = 32.0
    reserve: float = 0.0
    share_percent: float = 100.0
    max_wallbox_current: float = 0.0      # 0 = no separate wallbox line
    max_imbalance: float = 20.0
    imbalance_incl_consumption: bool = False
    voltage: float = 230.0
    pause_s: float = 300.0
    rotation_s: float = 900.0
    delay_3p_s: float = 300.0
    on_deactivate: str = "min_current"    # how an inactive box is left: it is counted at what that allows
    power_limit_w: float = 0.0            # all wallboxes together (grid operator, §14a EnWG); 0 = none


@dataclass(frozen=True)
class Evse:
    """One controllable charge point as the engine sees it this cycle."""

    name: str
    min_current: float = 6.0
    max_current: float = 16.0
    phases: int = 3                       # box phases the car uses: 1..3; 0 = unknown (counts as 3)
    rotation: int = 0                     # 0 | 120 | 240
    priority: int = 1                     # higher is served first
    offset: float = 0.0                   # added to the command; counts against every limit
    fcfs: bool = False
    enabled: bool = True                  # managed; False = apply on_deactivate, allocate nothing
    controllable: bool = True             # online and its last command confirmed
    max_possible_draw: float = 0.0        # U, per used phase: counted instead of a command when not controllable
    demand: bool = False                  # car plugged in and authorised, or charging
    plugged_at: float | None = None       # when the car arrived (for first-come-first-served)
    measured: Phases3 | None = None       # drawn current per BOX phase, None without a meter
    command: float = 0.0                  # the command currently in effect (A, 0 = paused)
    whole_amps: bool = False              # the box takes whole amperes only: commands are whole A
    switch_phases: bool = False           # the box may switch this car between 1 and 3 phases now


@dataclass(frozen=True)
class Measurements:
    now: float                            # seconds, monotonic
    house_load: Phases3 = (0.0, 0.0, 0.0)  # H_p: non-wallbox load per building phase
    penalty: Phases3 = (0.0, 0.0, 0.0)     # overdraft penalty per building phase
    transient: str = ""                   # why the controller's view is briefly unsettled (e.g. a device
                                          # list just reloaded): cars stopped meanwhile are not paused


@dataclass(frozen=True)
class Allocation:
    name: str
    current: float                        # the command: 0 (paused) or >= min_current, 0.1 A steps
    phases: int                           # phases to use: differs from the box's while switching 1p/3p
    reason: str                           # short, for the page and the event log
    counted: float = 0.0                  # A per phase this EVSE is counted at when not commanded (U)


@dataclass
class EngineState:
    """What the engine remembers between cycles (pauses, rotation, unused-current caps)."""

    paused_until: dict[str, float] = field(default_factory=dict)
    charging_since: dict[str, float] = field(default_factory=dict)
    waiting_since: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
