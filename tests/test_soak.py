"""The kill -9 soak, short: a few SIGKILLs of the real appliance at random moments while stations run
transactions with MeterValues and resend what was not answered (`make soak` runs 30). Plus the
store's side of it: a resent sample is stored once."""
import os
import sys

from appliance.store import MeterSample, Store
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from soak_kill import soak  # noqa: E402

KILLS = int(os.environ.get("SOAK_KILLS", 4))


def test_kill9_during_transactions_loses_and_duplicates_nothing(tmp_path):
    stations, problems = soak(tmp_path, KILLS, log=lambda *_: None)
    assert problems == []
    assert all(s.starts and s.stops for s in stations)      # each finished at least its last session


def test_a_resent_meter_sample_is_stored_once(tmp_path):
    store = Store(tmp_path / "ampgate.db")
    samples = [MeterSample("2026-12-01T10:00:00Z", "Energy.Active.Import.Register", "1000"),
               MeterSample("2026-12-01T10:00:00Z", "Current.Import", "16", phase="L1")]
    for _ in range(2):   # the answer to the first was lost in a restart: the station sends it again
        store.add_meter_values(samples, tx_id=7, device=None, charge_box_id="CP1", connector=1)
    assert len(store.meter_values(7)) == 2
    store.add_meter_values(samples, tx_id=8, device=None, charge_box_id="CP1", connector=1)
    assert len(store.meter_values(8)) == 2       # the same readings in another transaction are their own
    store.close()
