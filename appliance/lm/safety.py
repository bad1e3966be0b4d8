"""The safety rule (charging-manager.md §2.7), checked independently of the engine before anything is
sent. Written separately on purpose (its own phase table, plain float sums): a bug in the engine must
not hide itself by sharing code with its checker.

What counts, per building phase p the EVSE loads:
- an inactive EVSE: its maximum possible draw U, or what `on_deactivate` leaves it at if more;
- an uncontrollable EVSE: U;
- every other EVSE: its command (offset included); an EVSE without allocation: the command in effect;
- and anything the engine says it counted an EVSE at (`Allocation.counted`).
An EVSE is counted on the phases its box reports (a car being switched between 1 and 3 phases is
commanded 0 until its box reports the new phases). The grid operator's limit (`power_limit_w`) bounds
the sum over all wallbox phases times the voltage.
A limit is only reported when a command of ours loads that phase: loads we do not command (house,
uncontrollable boxes) can overload a phase on their own, which no allocation can fix (the overdraft
penalty handles that).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.lm.model import Allocation, Evse, Measurements, Site

TOL = 1e-6
# building phases per rotation: box L1, L2, L3 land on these building phases
_WIRING = {0: (0, 1, 2), 120: (1, 2, 0), 240: (2, 0, 1)}


@dataclass(frozen=True)
class Violation:
    message: str
    devices: tuple[str, ...] = ()     # the EVSEs whose own command is wrong, if that is the problem


def _phases_of(ev: Evse) -> tuple[int, ...]:
    used = ev.phases if ev.phases in (1, 2, 3) else 3
    return _WIRING[ev.rotation % 360][:used]


def _is_commanded(ev: Evse) -> bool:
    return ev.enabled and ev.controllable


def _counted(site: Site, ev: Evse, a: Allocation | None) -> float:
    if not ev.enabled:
        left = {"stop": 0.0, "min_current": ev.min_current, "clear_limits": ev.max_current}
        own = max(ev.max_possible_draw, left.get(site.on_deactivate, ev.max_current))
    elif not ev.controllable:
        own = ev.max_possible_draw
    else:
        own = ev.command if a is None else a.current
    return max(own, a.counted if a is not None else 0.0)


def check(site: Site, evses: list[Evse], meas: Measurements,
          allocations: dict[str, Allocation]) -> list[Violation]:
    found: list[Violation] = []
    total = [0.0, 0.0, 0.0]          # all wallbox load
    ours = [0.0, 0.0, 0.0]           # what our commands add
    uncontrolled = [0.0, 0.0, 0.0]
    for ev in evses:
        a = allocations.get(ev.name)
        amps = _counted(site, ev, a)
        commanded = _is_commanded(ev) and a is not None and a.current > 0
        for p in _phases_of(ev):
            total[p] += amps
            if commanded and a is not None:   # commanded implies an allocation; said for mypy
                ours[p] += a.current
            else:
                uncontrolled[p] += amps
        if _is_commanded(ev) and a is not None:
            found += _device_violations(ev, a)

    limit = site.max_current_per_phase * site.share_percent / 100.0 - site.reserve
    for p in range(3):
        if ours[p] <= 0:
            continue
        allowed = limit - meas.penalty[p]
        if meas.house_load[p] + total[p] > allowed + TOL:
            found.append(Violation(f"L{p + 1}: house {meas.house_load[p]:.1f} A + wallboxes {total[p]:.1f} A"
                                   f" > {allowed:.1f} A"))
        if site.max_wallbox_current > 0 and total[p] > site.max_wallbox_current + TOL:
            found.append(Violation(f"L{p + 1}: wallboxes {total[p]:.1f} A > wallbox line"
                                   f" {site.max_wallbox_current:.1f} A"))

    if any(ours) and site.power_limit_w > 0 and sum(total) * site.voltage > site.power_limit_w + TOL:
        found.append(Violation(f"wallboxes {sum(total) * site.voltage / 1000:.2f} kW > grid operator limit"
                               f" {site.power_limit_w / 1000:.2f} kW"))
    if any(ours):
        extra = list(meas.house_load) if site.imbalance_incl_consumption else [0.0, 0.0, 0.0]
        now = [total[p] + extra[p] for p in range(3)]
        before = [uncontrolled[p] + extra[p] for p in range(3)]
        allowed = max(site.max_imbalance, max(before) - min(before))
        if max(now) - min(now) > allowed + TOL:
            found.append(Violation(f"imbalance {max(now) - min(now):.1f} A > {allowed:.1f} A"))
    return found


def _device_violations(ev: Evse, a: Allocation) -> list[Violation]:
    bad = []
    if a.current > ev.max_current + TOL:
        bad.append(f"{a.current:g} A above its max {ev.max_current:g} A")
    if 0 < a.current < ev.min_current - TOL:
        bad.append(f"{a.current:g} A between 0 and its min {ev.min_current:g} A")
    if a.current < 0:
        bad.append(f"negative command {a.current:g} A")
    if abs(a.current * 10 - round(a.current * 10)) > 1e-6:
        bad.append(f"{a.current!r} A not in 0.1 A steps")
    return [Violation(f"{ev.name}: {b}", (ev.name,)) for b in bad]


def violations(site: Site, evses: list[Evse], meas: Measurements,
               allocations: dict[str, Allocation]) -> list[str]:
    """Every way the allocation breaks the safety rule, as readable lines; empty when it is safe."""
    return [v.message for v in check(site, evses, meas, allocations)]


def enforce(site: Site, evses: list[Evse], meas: Measurements,
            allocations: dict[str, Allocation]) -> tuple[dict[str, Allocation], list[str]]:
    """Make an unsafe allocation safe: pause the EVSEs whose own command is wrong, then pause commanded
    EVSEs from the lowest priority up (largest command first within a priority) until the rule holds.
    Returns the safe allocation and the violations found at first."""
    first = check(site, evses, meas, allocations)
    if not first:
        return allocations, []
    fixed = dict(allocations)

    def pause(name: str) -> None:
        fixed[name] = replace(fixed[name], current=0.0, reason="safety: paused")

    for v in first:
        for name in v.devices:
            pause(name)
    order = sorted((ev for ev in evses if _is_commanded(ev) and ev.name in fixed),
                   key=lambda ev: (ev.priority, -fixed[ev.name].current, ev.name))
    for ev in order:
        if not check(site, evses, meas, fixed):
            break
        if fixed[ev.name].current > 0:
            pause(ev.name)
    return fixed, [v.message for v in first]
