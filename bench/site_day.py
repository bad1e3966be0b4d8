"""A simulated day on a car park, run through the real load-management engine and controller on a
simulated clock, beside an offline oracle and a naive equal-share allocator on the same day.

The day comes from a scenario file (bench/site_day_*.json, seeded, so every run is the same day): the
site (limit per phase, imbalance, pause, rotation, delay before 3 phases), the wallboxes (max current,
phase rotation, whether the box can switch 1p/3p), the cars (1- and 3-phase, 16 or 32 A, drawn from a
mix), when they arrive and leave and how much energy they want (normal distributions, clipped), the
house load per phase over the day (hourly points, interpolated, plus seeded noise), and transients (a
box adopted at its maximum for a few cycles, a box not answering for a few cycles).

Physics, 1 s steps: a car draws min(offered, its max) on its phases (one phase while its box's relay is
on one phase) once the offer is at least 6 A, 2 s after the offer changed, until it has its energy; a
full car stays plugged in and draws nothing. The house meter reads the true load each cycle.

Figures per day:
- energy against the oracle: per minute, the most current the connection allows into the cars present
  (per-phase limits after the house load, the imbalance limit, each car's max and remaining energy, 1p/3p
  where the box can switch), a linear programme; no min current, no reaction time, so an upper bound;
- the same for the naive allocator (the tightest phase's budget shared equally, phase-blind, as many
  cars as get their min, in arrival order; no switching, no write order);
- cars that left below their wish; contactor switchings (pause/resume of a car that still wanted
  energy, and relay 1p/3p); limit violations: seconds in which a phase carried more than its limit
  although the house load had not risen since the controller last read it (a house load jump before the
  next cycle is the overdraft rule's business, counted apart), plus unsafe allocations the controller's
  safety check caught; the longest a car stopped by an adoption waited before charging again.

Usage: python bench/site_day.py [scenario.json ...]   (default: residential and office)
The last line is `site_day: X % of the oracle (residential), Y % of the oracle (office), violations: N`.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance import config as config_mod  # noqa: E402
from appliance.devices.base import Device, DeviceStatus  # noqa: E402
from appliance.lm.controller import Controller  # noqa: E402
from appliance.lm.model import Evse  # noqa: E402
from appliance.runtime import Runtime  # noqa: E402

HERE = Path(__file__).resolve().parent
SCENARIOS = [HERE / "site_day_residential.json", HERE / "site_day_office.json"]
CAR_MIN_A = 6.0          # a car starts drawing at an offer of 6 A
LAG_S = 2                # ... this long after the offer changed
ORACLE_STEP_S = 60
ADOPTION_HOLD_AIM_S = 300


# -- the day ---------------------------------------------------------------------------------------------
@dataclass
class Car:
    box: int
    arrive: int            # s since the start of the day
    leave: int
    want_wh: float
    phases: int            # 1 or 3
    max_a: float
    got_wh: float = 0.0
    draw: float = 0.0      # A per used phase, now
    offered: float = 0.0   # what the car sees (after the reaction lag)
    pending: list[tuple[int, float]] = field(default_factory=list)   # (when, offered): the reaction lag

    @property
    def full(self) -> bool:
        return self.got_wh >= self.want_wh - 1e-6


def _normal(rng: random.Random, spec: dict[str, float]) -> float:
    return min(spec["max"], max(spec["min"], rng.gauss(spec["mean"], spec["sd"])))


def make_day(sc: dict[str, Any]) -> tuple[list[Car], Callable[[int], tuple[float, float, float]]]:
    rng = random.Random(sc["seed"])
    start = sc["start_h"] * 3600
    mix = sc["cars"]
    cars = []
    for b in range(len(sc["boxes"])):
        for visit in sc["visits"]:
            if rng.random() > visit.get("share", 1.0):
                continue
            arrive = int(_normal(rng, visit["arrive_h"]) * 3600) - start
            leave = int(_normal(rng, visit["leave_h"]) * 3600) - start
            if leave - arrive < 900:
                continue
            kind = rng.choices(mix, weights=[m["weight"] for m in mix])[0]
            cars.append(Car(b, max(arrive, 0), min(leave, sc["hours"] * 3600), _normal(rng, visit["energy_kwh"]) * 1000,
                            kind["phases"], kind["max_a"]))
    cars.sort(key=lambda c: (c.box, c.arrive))
    fixed = []                 # one car per box at a time: a later visit waits for the earlier to leave
    for c in cars:
        prev = next((p for p in reversed(fixed) if p.box == c.box), None)
        if prev is not None and c.arrive < prev.leave + 60:
            c.arrive = prev.leave + 60
        if c.leave - c.arrive >= 900:
            fixed.append(c)
    noise_rng = random.Random(sc["seed"] + 1)
    points = sc["house"]["points"]          # [[hour, L1, L2, L3], ...] over the day
    noise = [[noise_rng.gauss(0, sc["house"]["noise_a"]) for _ in range(3)] for _ in range(sc["hours"] * 60 + 1)]

    def house(t: int) -> tuple[float, float, float]:
        h = sc["start_h"] + t / 3600
        h = h if h >= points[0][0] else h + 24
        for (h0, *a), (h1, *b) in zip(points, points[1:]):
            if h0 <= h <= h1:
                f = (h - h0) / (h1 - h0)
                m = min(t // 60, len(noise) - 1)     # the house load changes once a minute
                return tuple(max(0.0, round(a[p] + (b[p] - a[p]) * f + noise[m][p], 1)) for p in range(3))  # type: ignore
        return tuple(points[-1][1:])  # type: ignore[return-value]

    def stepped(t: int) -> tuple[float, float, float]:
        return house(t // 60 * 60)

    return fixed, stepped


# -- the site under the real controller --------------------------------------------------------------------
class SimBox(Device):
    """A wallbox with a car model, as the controller sees any device: lm_input / apply."""

    kind = "simbox"

    def __init__(self, name: str, spec: dict[str, Any], sim: "Site"):
        super().__init__(name, {"type": "simbox", "active": True, "max_current": spec["max_current"]}, None)
        self.spec, self.sim = spec, sim
        self.rotation = spec["rotation"]
        self.switchable = bool(spec.get("switchable"))
        self.relay = 3
        self.command = 0.0
        self.car: Car | None = None
        self.silent_until = -1       # a transient: counted at its max while it does not answer
        self.relay_switches = 0

    def lm_input(self) -> Evse:
        car, silent = self.car, self.sim.t < self.silent_until
        phases = 1 if self.relay == 1 or (car is not None and car.phases == 1) else 3
        return Evse(self.name, min_current=6.0, max_current=self.spec["max_current"], phases=phases,
                    rotation=self.rotation, controllable=not silent,
                    max_possible_draw=self.spec["max_current"] if silent else self.command,
                    demand=car is not None, command=self.command,
                    switch_phases=self.switchable and car is not None and car.phases == 3,
                    measured=(car.draw, car.draw if phases > 1 else 0.0, car.draw if phases > 1 else 0.0)
                    if car is not None else (0.0, 0.0, 0.0))

    def apply(self, current: float, phases: int) -> bool:
        if self.sim.t < self.silent_until:
            return False
        if current == 0 and self.switchable and phases in (1, 3) and phases != self.relay:
            if self.car is None or self.car.draw == 0:      # the relay moves only with no current flowing
                self.relay = phases
                self.relay_switches += 1
        self.set_offer(current)
        return True

    def set_offer(self, current: float) -> None:
        self.command = current
        if self.car is not None:
            self.car.pending.append((self.sim.t + LAG_S, current))

    def deactivate(self, mode: str) -> None:
        pass

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.name, self.kind, online=True)


class HouseMeter(Device):
    is_evse = False
    kind = "simmeter"

    def __init__(self, sim: "Site"):
        super().__init__("house", {"type": "simmeter", "role": "consumption"}, None)
        self.sim = sim

    def house_load(self) -> tuple[float, float, float]:
        self.sim.house_read = self.sim.house_now
        return self.sim.house_now

    def status(self) -> DeviceStatus:
        return DeviceStatus(self.name, self.kind, online=True)


@dataclass
class Result:
    wished_wh: float = 0.0
    got_wh: float = 0.0
    below_wish: int = 0
    pauses: int = 0
    resumes: int = 0
    relay: int = 0
    violation_s: int = 0
    house_jump_s: int = 0
    unsafe: int = 0
    adoption_hold_s: float = 0.0
    cars: int = 0

    @property
    def switchings(self) -> int:
        return self.pauses + self.resumes + self.relay


class Site:
    """The physical day: cars arriving and leaving at boxes, drawing what they are offered."""

    def __init__(self, sc: dict[str, Any], cars: list[Car], house: Callable[[int], tuple[float, float, float]]):
        self.sc, self.house = sc, house
        self.limit = float(sc["site"]["max_current_per_phase"])
        self.cars = [Car(**{k: getattr(c, k) for k in ("box", "arrive", "leave", "want_wh", "phases", "max_a")})
                     for c in cars]
        self.t = 0
        self.house_now = house(0)
        self.house_read = self.house_now
        window = int(sc["site"]["cycle_s"]) + LAG_S + 1
        self.seen = [self.house_now] * window   # house load as read by the controller, the last seconds
        self.boxes = [SimBox(f"box{i + 1:02d}", spec, self) for i, spec in enumerate(sc["boxes"])]
        self.result = Result(wished_wh=sum(c.want_wh for c in self.cars), cars=len(self.cars))
        self._stopped_at: dict[int, int] = {}      # car index -> when it stopped while still wanting energy

    def phases_of(self, box: SimBox, car: Car) -> list[int]:
        n = 1 if box.relay == 1 or car.phases == 1 else 3
        k = box.rotation // 120
        return [(i + k) % 3 for i in range(n)]

    def tick(self) -> None:
        """One second: arrivals, departures, car reactions, energy, and the limit check."""
        t = self.t
        self.house_now = self.house(t)
        self.seen.append(self.house_read)
        del self.seen[0]
        true_load = list(self.house_now)
        for i, car in enumerate(self.cars):
            box = self.boxes[car.box]
            if car.arrive == t:
                box.car = car
                car.pending.append((t + LAG_S, box.command))
                self.sim_event("arrive", box)
            if box.car is not car:
                continue
            if t >= car.leave:
                box.car = None
                car.draw = 0.0
                self.sim_event("leave", box)
                continue
            while car.pending and car.pending[0][0] <= t:
                car.offered = car.pending.pop(0)[1]
            before = car.draw
            ok = car.offered >= CAR_MIN_A and not car.full
            car.draw = min(car.offered, car.max_a, box.spec["max_current"]) if ok else 0.0
            self._count_switch(i, car, before)
            phases = self.phases_of(box, car)
            car.got_wh += car.draw * len(phases) * self.voltage / 3600
            for p in phases:
                true_load[p] += car.draw
        over = [p for p in range(3) if true_load[p] > self.limit + 0.05]
        # over the limit because the house load rose and the controller has not seen it long enough
        # for the cars to react (a cycle plus their lag): the overdraft rule's business, counted apart
        jump = [p for p in over if any(self.house_now[p] > h[p] + 0.05 for h in self.seen)]
        if len(jump) < len(over):
            self.result.violation_s += 1
        elif over:
            self.result.house_jump_s += 1

    @property
    def voltage(self) -> float:
        return float(self.sc["site"]["voltage"])

    def _count_switch(self, i: int, car: Car, before: float) -> None:
        if before > 0 and car.draw == 0 and not car.full:
            self.result.pauses += 1
            self._stopped_at[i] = self.t
        elif before == 0 and car.draw > 0 and i in self._stopped_at:
            self.result.resumes += 1
            stopped = self._stopped_at.pop(i)
            if i in self.held_by_adoption:
                self.held_by_adoption.discard(i)
                self.result.adoption_hold_s = max(self.result.adoption_hold_s, self.t - stopped)

    held_by_adoption: set[int] = set()       # cars the controller stopped because of an adoption

    def sim_event(self, what: str, box: SimBox) -> None:
        pass

    def finish(self) -> Result:
        r = self.result
        r.got_wh = sum(c.got_wh for c in self.cars)
        r.below_wish = sum(1 for c in self.cars if c.got_wh < c.want_wh - 100)   # 0.1 kWh slack
        r.relay = sum(b.relay_switches for b in self.boxes)
        return r


class ControlledSite(Site):
    """The real controller, on a real Runtime (config file, SQLite store, event log) in a temp dir."""

    def __init__(self, sc: dict[str, Any], cars: list[Car], house: Callable, tmp: Path):
        super().__init__(sc, cars, house)
        s = sc["site"]
        conf = tmp / "ampgate.conf"
        conf.write_text("[load_management]\n" + "".join(f"{k} = {v}\n" for k, v in s.items()), encoding="utf-8")
        self.rt = Runtime(config_mod.load(conf), tmp / "var")
        self.rt.lm_trigger = lambda: None
        self.ctl = Controller(self.rt, apply_wait_s=5.0, clock=lambda: float(self.t))
        self.rt.devices["house"] = HouseMeter(self)
        for b in self.boxes:
            self.rt.devices[b.name] = b
        self.adoptions = [int(e["at_h"] * 3600 - sc["start_h"] * 3600) for e in sc.get("events", [])
                          if e["what"] == "adopt"]
        self.events = {int(e["at_h"] * 3600 - sc["start_h"] * 3600): e for e in sc.get("events", [])}
        self.adopted: list[SimBox] = []
        self.adopted_at = -1
        self.held_by_adoption = set()

    def run(self) -> Result:
        cycle = int(self.sc["site"]["cycle_s"])
        for self.t in range(self.sc["hours"] * 3600):
            self._transients()
            self.tick()
            if self.t % cycle == 0:
                self._note_adoption_holds(self.ctl.cycle())
        self.result.unsafe = sum(1 for e in self.rt.store.events() if "unsafe allocation" in e["message"])
        self.ctl.stop()
        self.rt.close()
        return self.finish()

    def _note_adoption_holds(self, alloc: dict[str, Any]) -> None:
        if not self.adopted or self.t > self.adopted_at + 60:
            return
        for b in self.boxes:
            a = alloc.get(b.name)
            if b.car is not None and a is not None and a.current == 0 and "adopted" in a.reason:
                self.held_by_adoption.add(self.cars.index(b.car))

    def _transients(self) -> None:
        e = self.events.get(self.t)
        if e is None:
            return
        if e["what"] == "adopt":     # a new box, counted at its max until its first command is confirmed
            box = SimBox(f"adopted{len(self.adopted) + 1}", {"max_current": e["max_current"], "rotation": 0}, self)
            box.silent_until = self.t + e["for_s"]
            self.adopted.append(box)
            self.adopted_at = self.t
            self.rt.devices[box.name] = box
            self.ctl.reloaded()
        elif e["what"] == "silent":  # a box not answering for a few cycles (e.g. a station rebooting)
            self.boxes[e["box"]].silent_until = self.t + e["for_s"]


class NaiveSite(Site):
    """The peer: every cycle, the tightest phase's budget shared equally among the plugged-in cars
    (phase-blind), as many cars as get their min, in arrival order; commands sent at once."""

    def run(self) -> Result:
        cycle = int(self.sc["site"]["cycle_s"])
        for self.t in range(self.sc["hours"] * 3600):
            self.tick()
            if self.t % cycle == 0:
                self.house_read = self.house_now
                self._allocate()
        return self.finish()

    def _allocate(self) -> None:
        budget = min(self.limit - h for h in self.house_read)
        wanting = sorted((b for b in self.boxes if b.car is not None), key=lambda b: b.car.arrive)  # type: ignore
        k = min(len(wanting), max(0, int(budget // CAR_MIN_A)))
        share = math.floor(budget / k * 10) / 10 if k else 0.0
        for i, b in enumerate(wanting):
            want = min(share, b.spec["max_current"]) if i < k else 0.0
            if want != b.command:
                b.set_offer(want)


# -- the oracle ----------------------------------------------------------------------------------------------
def simplex_max(c: list[float], rows: list[list[float]], b: list[float]) -> tuple[float, list[float]]:
    """max c.x subject to rows.x <= b, x >= 0, with b >= 0 (the origin is feasible). Bland's rule."""
    m, n = len(rows), len(c)
    tab = [rows[i][:] + [1.0 if j == i else 0.0 for j in range(m)] + [b[i]] for i in range(m)]
    obj = [-v for v in c] + [0.0] * m + [0.0]
    basis = [n + i for i in range(m)]
    while True:
        col = next((j for j in range(n + m) if obj[j] < -1e-9), None)
        if col is None:
            break
        best, row = math.inf, None
        for i in range(m):
            if tab[i][col] > 1e-12:
                ratio = tab[i][-1] / tab[i][col]
                if ratio < best - 1e-12 or (abs(ratio - best) <= 1e-12 and row is not None and basis[i] < basis[row]):
                    best, row = ratio, i
        if row is None:
            raise ValueError("unbounded")
        piv = tab[row][col]
        tab[row] = [v / piv for v in tab[row]]
        for i in range(m):
            if i != row and tab[i][col]:
                f = tab[i][col]
                tab[i] = [a - f * r for a, r in zip(tab[i], tab[row])]
        f = obj[col]
        obj = [a - f * r for a, r in zip(obj, tab[row])]
        basis[row] = col
    x = [0.0] * (n + m)
    for i, j in enumerate(basis):
        x[j] = tab[i][-1]
    return obj[-1], x[:n]


def _oracle_step(budget: tuple[float, ...], imb: float, fixed3: float, sw: tuple[float, ...],
                 one: tuple[float, ...]) -> tuple[float, ...]:
    """Variables T (3-phase cars), x_p (switchable cars on 3 phases, by the phase their box L1 is on),
    z_p (the same on one phase), y_p (1-phase cars); returns the solution."""
    # order: T, x0 x1 x2, z0 z1 z2, y0 y1 y2
    c = [3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    rows, b = [], []

    def row(coef: dict[int, float], bound: float) -> None:
        r = [0.0] * 10
        for k, v in coef.items():
            r[k] = v
        rows.append(r)
        b.append(max(0.0, bound))

    row({0: 1}, fixed3)
    for p in range(3):
        row({1 + p: 1, 4 + p: 1}, sw[p])
        row({7 + p: 1}, one[p])
        row({0: 1, 1: 1, 2: 1, 3: 1, 4 + p: 1, 7 + p: 1}, budget[p])
    for p in range(3):
        for q in range(3):
            if p != q:
                row({4 + p: 1, 7 + p: 1, 4 + q: -1, 7 + q: -1}, imb)
    _, x = simplex_max(c, rows, b)
    return tuple(x)


def _fill(amount: float, caps: list[float]) -> list[float]:
    """Share `amount` equally among cars with these caps (water-filling)."""
    out = [0.0] * len(caps)
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    left = amount
    for k, i in enumerate(order):
        out[i] = min(caps[i], left / (len(order) - k))
        left -= out[i]
    return out


def oracle(sc: dict[str, Any], cars: list[Car], house: Callable) -> Result:
    """Per minute, the most energy the connection lets into the cars present (see the module doc)."""
    s, boxes = sc["site"], sc["boxes"]
    limit, imb, volts = float(s["max_current_per_phase"]), float(s["max_imbalance"]), float(s["voltage"])
    got = [0.0] * len(cars)
    cache: dict[tuple, tuple[float, ...]] = {}
    dt_h = ORACLE_STEP_S / 3600
    for t in range(0, sc["hours"] * 3600, ORACLE_STEP_S):
        h = house(t)
        here = [i for i, c in enumerate(cars) if c.arrive <= t < c.leave and got[i] < c.want_wh - 1e-6]
        groups: dict[tuple, list[int]] = {}
        caps = {}
        for i in here:
            c, box = cars[i], boxes[cars[i].box]
            k = box["rotation"] // 120
            top = min(c.max_a, box["max_current"])
            if c.phases == 3 and box.get("switchable"):
                key = ("sw", k)
                caps[i] = min(top, (c.want_wh - got[i]) / (volts * dt_h * 3))
            elif c.phases == 3:
                key = ("3",)
                caps[i] = min(top, (c.want_wh - got[i]) / (volts * dt_h * 3))
            else:
                key = ("1", k)
                caps[i] = min(top, (c.want_wh - got[i]) / (volts * dt_h))
            groups.setdefault(key, []).append(i)
        total = lambda key: round(sum(caps[i] for i in groups.get(key, [])), 2)  # noqa: E731
        args = (tuple(round(limit - h[p], 2) for p in range(3)), imb, total(("3",)),
                tuple(total(("sw", p)) for p in range(3)), tuple(total(("1", p)) for p in range(3)))
        x = cache.get(args)
        if x is None:
            x = cache[args] = _oracle_step(*args)
        for key, members in groups.items():
            if key == ("3",):
                shares = [(a, 3) for a in _fill(x[0], [caps[i] for i in members])]
            elif key[0] == "sw":
                three = _fill(x[1 + key[1]], [caps[i] for i in members])
                one = _fill(x[4 + key[1]], [caps[i] - a for i, a in zip(members, three)])
                shares = [(a3 * 3 + a1, 1) for a3, a1 in zip(three, one)]
            else:
                shares = [(a, 1) for a in _fill(x[7 + key[1]], [caps[i] for i in members])]
            for i, (amps, n) in zip(members, shares):
                got[i] = min(cars[i].want_wh, got[i] + amps * n * volts * dt_h)
    r = Result(wished_wh=sum(c.want_wh for c in cars), got_wh=sum(got), cars=len(cars))
    r.below_wish = sum(1 for c, g in zip(cars, got) if g < c.want_wh - 100)
    return r


# -- the report ------------------------------------------------------------------------------------------------
def run_scenario(path: Path) -> tuple[str, Result, Result, Result, float]:
    sc = json.loads(path.read_text(encoding="utf-8"))
    cars, house = make_day(sc)
    best = oracle(sc, cars, house)
    naive = NaiveSite(sc, cars, house).run()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None     # the store fsyncs: keep it in RAM
    tmp = Path(tempfile.mkdtemp(prefix="site_day_", dir=base))
    try:
        t0 = time.perf_counter()
        ours = ControlledSite(sc, cars, house, tmp).run()
        took = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sc["name"], best, ours, naive, took


def pct(a: float, b: float) -> float:
    return 100.0 * a / b if b else 100.0


def report(rows: list[tuple[str, Result, Result, Result, float]]) -> str:
    lines = []
    for name, best, ours, naive, took in rows:
        lines.append(f"{name}: {ours.cars} cars, {best.wished_wh / 1000:.1f} kWh wished; "
                     f"simulated day through the controller in {took:.1f} s")
        lines.append(f"  {'':34} {'oracle':>10} {'ampgate':>10} {'equal share':>12}")
        lines.append(f"  {'energy, kWh':34} {best.got_wh / 1000:10.1f} {ours.got_wh / 1000:10.1f} {naive.got_wh / 1000:12.1f}")
        lines.append(f"  {'energy, % of the oracle':34} {100.0:10.1f} {pct(ours.got_wh, best.got_wh):10.1f} "
                     f"{pct(naive.got_wh, best.got_wh):12.1f}")
        lines.append(f"  {'cars leaving below their wish':34} {best.below_wish:10d} {ours.below_wish:10d} {naive.below_wish:12d}")
        lines.append(f"  {'switchings: pause + resume':34} {'-':>10} {ours.pauses + ours.resumes:10d} "
                     f"{naive.pauses + naive.resumes:12d}")
        lines.append(f"  {'switchings: relay 1p/3p':34} {'-':>10} {ours.relay:10d} {naive.relay:12d}")
        lines.append(f"  {'limit violations (s + unsafe)':34} {'-':>10} {ours.violation_s + ours.unsafe:10d} "
                     f"{naive.violation_s:12d}")
        lines.append(f"  {'over the limit after a house jump, s':34} {'-':>10} {ours.house_jump_s:10d} {naive.house_jump_s:12d}")
        lines.append(f"  {'longest hold after an adoption, s':34} {'-':>10} {ours.adoption_hold_s:10.0f} {'-':>12}")
    figures = ", ".join(f"{pct(ours.got_wh, best.got_wh):.1f} % of the oracle ({name})" for name, best, ours, _, _ in rows)
    violations = sum(ours.violation_s + ours.unsafe for _, _, ours, _, _ in rows)
    lines.append(f"site_day: {figures}, violations: {violations}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenarios", nargs="*", type=Path, default=SCENARIOS, help="scenario JSON files")
    args = p.parse_args()
    print(report([run_scenario(path) for path in args.scenarios]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
