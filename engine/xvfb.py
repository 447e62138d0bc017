"""A private virtual X server (Xvfb) for running windows where there is no display: the window tests and the window
bench use it. `xvfb-run -a python play.py` does the same for a person."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def virtual_display(screen: str = "1024x768x24") -> Iterator[str]:
    """Start Xvfb on a free display number (it picks one: -displayfd), yield its DISPLAY (":N"), stop it after."""
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", screen, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit status {proc.poll()})")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
