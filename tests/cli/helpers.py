"""Running the real `sellervault` executable in a subprocess, with its own config home.

Each `Cli` is one user's shell: its ``XDG_CONFIG_HOME`` holds that user's ``cli.json``, so
several logged-in users can live side by side in one test module. No ``SELLERVAULT_*``
setting leaks in from the developer's environment; a wide ``COLUMNS`` keeps Rich from
wrapping paths and messages, so assertions can match them whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("sellervault")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sellervault.cli.main"]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:  # what pytest shows when an assertion on a result fails
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass(frozen=True)
class Cli:
    config_home: Path

    @property
    def credentials_file(self) -> Path:
        return self.config_home / "sellervault" / "cli.json"

    def credentials(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.credentials_file.read_text())
        return loaded

    def run(self, *args: str | Path, stdin: str = "", env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> Result:
        environment = {name: value for name, value in os.environ.items()
                       if not name.startswith("SELLERVAULT_")}
        environment.update(XDG_CONFIG_HOME=str(self.config_home), COLUMNS="250",
                           NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
        environment.update(env or {})
        completed = subprocess.run([*COMMAND, *map(str, args)], input=stdin, env=environment,
                                   cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                   check=False)
        return Result(completed.returncode, completed.stdout, completed.stderr)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
