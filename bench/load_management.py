"""Load-management benchmark: engine time per control cycle for 10, 100 and 1000 wallboxes.

Printed beside two peers measured in the same run on the same inputs:
- "naive": a straightforward equal-share allocator without phase awareness (the smallest phase budget
  split evenly among cars that want current, min/max clamped). It is what a phase-blind manager costs;
  it is NOT safe (it ignores rotations, imbalance, priorities and uncontrollable boxes).
- "safety": the independent safety check alone on the engine's result (the controller runs it every
  cycle after the engine, so engine + safety is the real per-cycle cost).

Sites are realistic mixes: 3-, 1- and unknown-phase cars on rotated boxes, two priorities, offsets,
some boxes uncontrollable or inactive, half of them metered, house load changing every cycle, and a
connection limit that leaves the site congested (pauses and rotation happen). The commands are fed
back each cycle, as the controller does, so the engine works on its own history.

The reaction time (StartTransaction -> SetChargingProfile with 100 simulated OCPP wallboxes on a real
`ampgate run`) is measured by bench/lm_reaction.py.

Usage: python bench/load_management.py [--cycles N]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.lm.engine import allocate  # noqa: E402
from appliance.lm.model import EngineState, Evse, Measurements, Site  # noqa: E402
from appliance.lm.safety import violations  # noqa: E402

AIM_MS_AT_100 = 1.0


def make_site(n: int, rng: random.Random) -> tuple[Site, list[Evse]]:
    # about 7 A per box and phase: congested enough that some cars pause and take turns
    site = Site(max_current_per_phase=max(32.0, 7.0 * n), reserve=2.0, max_imbalance=20.0 + n * 0.5)
    evses = []
    for i in range(n):
        phases = rng.choices([3, 1, 0, 2], weights=[60, 30, 8, 2])[0]
        mx = rng.choice([16.0, 16.0, 32.0])
        evses.append(Evse(
            name=f"wb{i:04d}", min_current=rng.choice([6.0, 6.0, 8.0]), max_current=mx, phases=phases,
            rotation=(i % 3) * 120, priority=rng.choices([1, 2], weights=[85, 15])[0],
            offset=rng.choice([0.0] * 9 + [1.0]), fcfs=rng.random() < 0.1,
            enabled=rng.random() > 0.03, controllable=rng.random() > 0.05,
            max_possible_draw=rng.choice([0.0, 6.0, mx]), demand=rng.random() < 0.7,
            plugged_at=rng.uniform(0, 1000), measured=None))
    return site, evses


def naive(site: Site, evses: list[Evse], meas: Measurements) -> dict[str, float]:
    """Peer: equal share of the tightest phase, phase-blind."""
    wanting = [ev for ev in evses if ev.enabled and ev.demand]
    if not wanting:
        return {}
    budget = min(site.max_current_per_phase - site.reserve - h for h in meas.house_load)
    share = budget / len(wanting)
    return {ev.name: (min(share, ev.max_current) if share >= ev.min_current else 0.0) for ev in wanting}


def feed_back(evses: list[Evse], alloc, rng: random.Random) -> list[Evse]:
    out = []
    for ev in evses:
        a = alloc[ev.name]
        if ev.enabled and ev.controllable:
            draw = a.current * rng.uniform(0.6, 1.0)
            ev = replace(ev, command=a.current, max_possible_draw=a.current,
                         measured=(draw, draw, draw) if hash(ev.name) % 2 else None)
        if rng.random() < 0.01:                     # cars come and go
            ev = replace(ev, demand=not ev.demand)
        out.append(ev)
    return out


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def bench(n: int, cycles: int, seed: int = 1) -> dict[str, tuple[float, float]]:
    rng = random.Random(seed)
    site, evses = make_site(n, rng)
    state = EngineState()
    times: dict[str, list[int]] = {"engine": [], "safety": [], "naive": []}
    now = 0.0
    for _ in range(cycles):
        now += 3.0
        house = tuple(rng.uniform(0, 0.3 * site.max_current_per_phase) for _ in range(3))
        meas = Measurements(now=now, house_load=house)  # type: ignore[arg-type]
        t0 = time.perf_counter_ns()
        alloc, state = allocate(site, evses, meas, state)
        t1 = time.perf_counter_ns()
        bad = violations(site, evses, meas, alloc)
        t2 = time.perf_counter_ns()
        naive(site, evses, meas)
        t3 = time.perf_counter_ns()
        assert not bad, bad
        times["engine"].append(t1 - t0)
        times["safety"].append(t2 - t1)
        times["naive"].append(t3 - t2)
        evses = feed_back(evses, alloc, rng)
    charging = sum(1 for a in alloc.values() if a.current > 0)
    print(f"  {n:5d} wallboxes, {cycles} cycles, last cycle: {charging} charging, "
          f"{sum(1 for ev in evses if ev.demand) - charging} wanting but paused or uncontrollable")
    return {k: percentiles(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=0, help="cycles per size (default: 2000/1000/200)")
    args = ap.parse_args()
    print("load management engine, time per cycle in ms (p50 / p99)")
    print("peer 'naive' = phase-blind equal-share allocator; 'safety' = the safety check alone")
    rows = []
    for n, default_cycles in ((10, 2000), (100, 1000), (1000, 200)):
        rows.append((n, bench(n, args.cycles or default_cycles)))
    print(f"{'wallboxes':>10} {'engine p50':>11} {'engine p99':>11} {'safety p50':>11} {'safety p99':>11}"
          f" {'naive p50':>10} {'naive p99':>10}")
    for n, r in rows:
        print(f"{n:>10} {r['engine'][0]:>11.3f} {r['engine'][1]:>11.3f} {r['safety'][0]:>11.3f}"
              f" {r['safety'][1]:>11.3f} {r['naive'][0]:>10.3f} {r['naive'][1]:>10.3f}")
    at100 = dict(rows)[100]["engine"][0]
    print(f"aim: under {AIM_MS_AT_100} ms per cycle at 100 wallboxes -> p50 {at100:.3f} ms "
          f"({'met' if at100 < AIM_MS_AT_100 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
