"""Running the real `sellervault` CLI with its own config home.

Each `Cli` is one user's shell: its ``XDG_CONFIG_HOME`` holds that user's ``cli.json``, so
several logged-in users can live side by side in one test module. ``run`` starts the real
executable in a subprocess (about a second each on a busy machine); ``invoke`` runs the same
Typer app in-process through ``CliRunner`` for the many error paths where stdin, output and
exit code are all that matter. No ``SELLERVAULT_*`` setting leaks in from the developer's
environment; a wide ``COLUMNS`` keeps Rich from wrapping paths and messages, so assertions
can match them whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sellervault.cli.main import app

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
        environment.update(self._env(), PYTHONDONTWRITEBYTECODE="1")
        environment.update(env or {})
        completed = subprocess.run([*COMMAND, *map(str, args)], input=stdin, env=environment,
                                   cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                   check=False)
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def invoke(self, *args: str | Path, stdin: str = "") -> Result:
        """The same command in-process; an unexpected exception is raised, not hidden."""
        result = CliRunner().invoke(app, [str(arg) for arg in args], input=stdin,
                                    env=self._env())
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Result(result.exit_code, result.stdout, result.stderr)

    def _env(self) -> dict[str, str]:
        return {"XDG_CONFIG_HOME": str(self.config_home), "COLUMNS": "250", "NO_COLOR": "1"}


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
