"""The real appliance (`python -m appliance run`) as a subprocess on free ports, for benchmarks that
hit it from outside: its RSS and peak RSS from /proc, and whether it is still alive."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]


class ApplianceProcess:
    def __init__(self, workdir: Path, conf_text: str = "", server: str = ""):
        self.ocpp_port, self.web_port = free_port(), free_port()
        conf = workdir / "ampgate.conf"
        conf.write_text(f"[web]\nport = {self.web_port}\nbind = 127.0.0.1\n[ocpp_server]\nport = {self.ocpp_port}\n"
                        f"bind = 127.0.0.1\n{server}\n{conf_text}", encoding="utf-8")
        self.data = workdir / "var"
        self.command = [sys.executable, "-m", "appliance", "run", "--config", str(conf), "--data", str(self.data)]
        self.log = open(workdir / "appliance.log", "ab")
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.ocpp_port)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(15)

    def url(self, cpid: str) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/{cpid}"

    def status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def rss_kb(self) -> int:
        return self.status_kb("VmRSS")

    def peak_kb(self) -> int:
        return self.status_kb("VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        finally:
            self.log.close()
