"""The console on a real pseudo-terminal against the running appliance: line editing and history (the
Up key brings the last command back), the banner, the grid limit with a decimal comma, and a register
read through the Modbus tool (the appliance's own bus queue, over its API)."""
from __future__ import annotations

from modbus_fixtures import tcp_sim
from test_console import Terminal
from tests.web_appliance import Appliance, set_password

PASSWORD = "console-pass-1"
UP = "\x1b[A"


def test_history_banner_grid_and_a_register_read(tmp_path):
    sim, port = tcp_sim("--units", "1")
    try:
        extra = f'[devices]\n  [[box]]\n  type = powerbrain\n  port = "{port}"\n  unit = 1\n'
        with Appliance(tmp_path, extra) as a:
            set_password(a, PASSWORD)
            t = Terminal(a.config, a.data)
            try:
                t.expect("password: ")
                t.send(PASSWORD)
                banner = t.expect("ampgate> ")
                assert f":{a.web_port}/" in banner and f":{a.ocpp_port}/<chargeBoxId>" in banner
                out = t.command(f"modbus {port} 1 8000 32")
                assert "register 8000 = 52997 (raw 0000 CF05)" in out, out
                t.send(UP, end="")       # the last command again, as typed
                t.expect(f"modbus {port} 1 8000 32")
                t.send("", end="\r")
                t.expect("register 8000 = 52997")
                t.expect("ampgate> ")
                assert "grid limit set to 25.5 A per phase" in t.command("grid 25,5")
                assert "no device named 'nobox'" in t.command("disable nobox")
                t.send("exit")
                assert t.wait() == 0
            finally:
                t.close()
    finally:
        sim.stop()
