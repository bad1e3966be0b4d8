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

Second part: reaction time from StartTransaction to a charging profile above 0 A with 100 simulated
OCPP wallboxes on a real `ampgate run` (see `reaction_time_ocpp`).

Usage: python bench/load_management.py [--cycles N] [--boxes N] [--no-reaction]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()   # the simulated wallboxes of the reaction-time part are gevent clients

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        gevent.sleep(0.005)


def reaction_time_ocpp(n_boxes: int = 100, stagger_s: float = 0.05) -> None:
    """Reaction time: a car starts (StartTransaction sent) until the station holds a charging profile
    above 0 A, with `n_boxes` simulated OCPP wallboxes on one `ampgate run` (default cycle_s 3 s,
    settle_s 5 s; the grid has room for every car, so this is event -> cycle -> profile, no waiting
    for others' reductions). Starts are staggered by `stagger_s`, so cycles overlap.
    Peer in the same run: the StartTransaction round trip alone (the station waiting for our answer),
    i.e. the part of the reaction that is the OCPP exchange rather than load management."""
    from appliance.sim.ocpp_wallbox import SimWallbox

    work = Path(tempfile.mkdtemp(prefix="ampgate-lm-bench-"))
    port = _free_port()
    devices = "".join(f"[[box{i:03d}]]\ntype = ocpp16\naddress = BOX{i:03d}\nmax_current = 16\n"
                      for i in range(n_boxes))
    conf = work / "ampgate.conf"
    conf.write_text(f"[ocpp_server]\nport = {port}\nbind = 127.0.0.1\nping_interval = 0\n"
                    f"[load_management]\nmax_current_per_phase = {16 * n_boxes + 16}\n"
                    f"max_imbalance = {16 * n_boxes}\n[devices]\n{devices}", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--no-web", "--log-level", "warning",
                             "--config", str(conf), "--data", str(work / "var")], env=env,
                            stdout=subprocess.DEVNULL, stderr=(work / "ampgate.log").open("wb"))
    boxes = [SimWallbox(f"ws://127.0.0.1:{port}/BOX{i:03d}", meter_interval=60) for i in range(n_boxes)]
    try:
        _wait(lambda: _port_open(port), 60, "the OCPP port")
        gevent.joinall([gevent.spawn(b.connect) for b in boxes], raise_error=True)
        _wait(lambda: all("SetChargingProfile" in b.received for b in boxes), 120, "default profiles")
        reaction, round_trip = [], []

        def one(box: SimWallbox, delay: float) -> None:
            gevent.sleep(delay)
            t0 = time.monotonic()
            box.start()
            round_trip.append(time.monotonic() - t0)
            _wait(lambda: (box.limit(1) or 0) > 0, 120, f"a profile for {box.url}")
            reaction.append(time.monotonic() - t0)

        gevent.joinall([gevent.spawn(one, b, i * stagger_s) for i, b in enumerate(boxes)], raise_error=True)
    except Exception:
        print(f"  reaction-time run failed; server log: {work / 'ampgate.log'}")
        raise
    finally:
        for b in boxes:
            b.close()
        proc.terminate()
        proc.wait(timeout=30)
    r50, r99 = percentiles([int(x * 1e9) for x in reaction])
    t50, t99 = percentiles([int(x * 1e9) for x in round_trip])
    print(f"reaction StartTransaction -> SetChargingProfile > 0 A, {n_boxes} simulated OCPP wallboxes "
          f"(starts {stagger_s * 1000:.0f} ms apart, cycle_s 3):")
    print(f"  load management reaction p50 {r50:.0f} ms, p99 {r99:.0f} ms, max {max(reaction) * 1000:.0f} ms")
    print(f"  peer: StartTransaction round trip alone p50 {t50:.1f} ms, p99 {t99:.1f} ms")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=0, help="cycles per size (default: 2000/1000/200)")
    ap.add_argument("--boxes", type=int, default=100, help="simulated OCPP wallboxes for the reaction time")
    ap.add_argument("--no-reaction", action="store_true", help="skip the reaction-time part")
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
    if not args.no_reaction:
        reaction_time_ocpp(args.boxes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
