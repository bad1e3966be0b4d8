"""Overdraft (charging-manager.md §2.2): the measured total above the connection's limit, per phase.

The largest overdraw seen is kept for display until reset; each overdraw also lowers the current
available for charging on that phase by the overdrawn amount for `penalty_s`, so the fuse can cool.
Pure: time is passed in.
"""
from __future__ import annotations

from appliance.lm.model import Phases3


class Overdraft:
    def __init__(self, penalty_s: float = 300.0):
        self.penalty_s = penalty_s
        self.peak = [0.0, 0.0, 0.0]                              # largest overdraw seen, per phase
        self._recent: list[list[tuple[float, float]]] = [[], [], []]   # per phase: (until, amount)

    def update(self, now: float, total: Phases3, limit: float) -> Phases3:
        """Record this cycle's measured total per building phase; returns the penalty per phase."""
        for p in range(3):
            over = total[p] - limit
            if over > 0:
                self.peak[p] = max(self.peak[p], over)
                self._recent[p].append((now + self.penalty_s, over))
        return self.penalty(now)

    def penalty(self, now: float) -> Phases3:
        out = []
        for p in range(3):
            self._recent[p] = [(until, a) for until, a in self._recent[p] if until > now]
            out.append(max((a for _, a in self._recent[p]), default=0.0))
        return (out[0], out[1], out[2])

    def reset(self) -> None:
        """Clear the displayed peak (the penalty keeps running: the fuse is still warm)."""
        self.peak = [0.0, 0.0, 0.0]
