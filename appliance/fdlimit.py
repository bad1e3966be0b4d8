"""File descriptors: every station connection holds one, and so does every page request.

A service typically starts with a soft limit of 1,024 open files while the hard limit allows far
more; the appliance raises its soft limit to the hard one at start (capped, so select()-free code
is all that runs here anyway), and the servers keep a reserve so that stations and the page keep
working when one LAN host opens connections in bulk (appliance/ocpp/guard.py).
"""
from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("ampgate")
CAP = 1 << 20


def raise_soft_limit() -> int:
    """Raise the soft RLIMIT_NOFILE toward the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CAP if hard == resource.RLIM_INFINITY else min(hard, CAP)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, want, e)
    return CAP if soft == resource.RLIM_INFINITY else soft


def open_count() -> int:
    """File descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0
