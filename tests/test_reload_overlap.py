"""Inside (issue 16 item 18): two device reloads at once (a page save and the file watcher) and a
request to a Modbus bus after it was stopped, with real meters on real (unanswered) TCP links."""
import gevent
import pytest

from appliance import config
from appliance.modbus.bus import Bus, BusError, acquire, parse_port, release
from appliance.runtime import Runtime
from conftest import free_port


def site(devices: list[str]) -> str:
    return "[load_management]\nmode = monitor\n[devices]\n" + "".join(devices)


def test_overlapping_reloads_remove_each_device_once(conf_file, data_dir):
    devices = [f'[[m{i}]]\ntype = sdm630\nport = "tcp://127.0.0.1:{free_port()}"\nunit = 1\nrole = consumption\n'
               for i in range(5)]
    path = conf_file(site(devices))
    rt = Runtime(config.load(path), data_dir)
    rt.load_devices()
    assert len(rt.devices) == 5
    gevent.sleep(0.05)                     # the pollers are running (stopping them yields)
    path.write_text(site(devices[:1]), encoding="utf-8")
    assert rt.config.refresh()
    reloads = [gevent.spawn(rt.load_devices) for _ in range(2)]
    gevent.joinall(reloads, raise_error=True)
    assert list(rt.devices) == ["m0"]
    rt.close()


def test_a_stopped_bus_is_never_restarted_beside_its_successor():
    spec = f"tcp://127.0.0.1:{free_port()}"
    old = acquire(spec, 0.1, 0)
    release(old)                           # its device was removed ...
    new = acquire(spec, 0.1, 0)            # ... and a new one owns the link now
    with pytest.raises(BusError, match="bus stopped"):
        old.read_holding(1, 0, 1)          # a late request of the old device
    assert old._greenlet is None
    release(new)


def test_a_fresh_bus_still_starts_on_first_use():
    bus = Bus(parse_port(f"tcp://127.0.0.1:{free_port()}"), timeout=0.1, retries=0)
    with pytest.raises(BusError) as e:
        bus.read_holding(1, 0, 1)
    assert e.value.kind != "connect" or "stopped" not in str(e.value)
    bus.stop()
