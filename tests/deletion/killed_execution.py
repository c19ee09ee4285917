"""Run one deletion request's execution in this process and SIGKILL the process just before
its Nth commit (that transaction lost, every one before it kept): a crash at any point
between the execution's commits.

    python -m tests.deletion.killed_execution REQUEST_ID N

The data directory and database come from ``SELLERVAULT_*`` in the environment, as for the
CLI. Exits 0 if the execution finished before the Nth commit."""

from __future__ import annotations

import os
import signal
import sys

from sqlalchemy import event
from sqlalchemy.orm import Session

from sellervault import bootstrap
from sellervault.audit.auditor import Auditor
from sellervault.audit.events import Actor, Channel
from sellervault.config import load_settings
from sellervault.deletion import execution


def main(request_id: str, at: int) -> None:
    commits = 0

    def count(_session: Session) -> None:
        nonlocal commits
        commits += 1
        if commits == at:
            os.kill(os.getpid(), signal.SIGKILL)

    runtime = bootstrap.open_runtime(load_settings())
    event.listen(Session, "before_commit", count)
    execution.execute(runtime, Auditor(runtime.audit, Actor(Channel.API, actor_id="acc_"
                                                            + "5" * 24)),
                      "acc_" + "5" * 24, request_id)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
