"""One rollout per --out at a time, and a killed rollout leaves no workers behind (issue 20)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import Action
from engine.files import FolderBusyError
from engine.rollout import LOCK_FILE, out_lock, rollout
from tests.conftest import ROOT

PID_DIR = "DREAMWALK_TEST_PID_DIR"


class SlowPolicy:
    """Walks slowly; notes the pid of each process that runs it (in $DREAMWALK_TEST_PID_DIR)."""

    def __init__(self) -> None:
        self.noted = False

    def __call__(self, obs):
        if not self.noted and os.environ.get(PID_DIR):
            Path(os.environ[PID_DIR], str(os.getpid())).touch()
            self.noted = True
        time.sleep(0.02)
        return Action(forward=True)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def small(out, **kw):
    return rollout("plane", out, episodes=kw.pop("episodes", 2), ticks=kw.pop("ticks", 5), policy="idle",
                   config={"width": 16, "height": 16}, progress=False, **kw)


def test_a_second_rollout_on_the_same_out_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from engine.rollout import out_lock\n"
                               f"with out_lock(Path({str(out)!r})):\n    print('locked', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
            small(out)
        p = subprocess.run([sys.executable, "-m", "engine.rollout", "--world", "plane", "--policy", "idle", "--episodes",
                            "1", "--ticks", "3", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert f"in use by another rollout (pid {holder.pid}" in p.stderr
        assert not list(out.glob("ep_*")), "the refused rollout wrote episodes"
        with pytest.raises(FolderBusyError):  # the same process twice is refused too
            with out_lock(tmp_path):
                with out_lock(tmp_path):
                    pass
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed without releasing: its lock is taken over.
    assert (out / LOCK_FILE).exists()
    assert small(out)["episodes"] == 2
    assert not (out / LOCK_FILE).exists(), "the lock outlived its rollout"


def test_a_stale_lock_file_from_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"{dead.pid}\n")
    assert small(out)["episodes"] == 2
    assert not (out / LOCK_FILE).exists()


def test_killing_a_parallel_rollout_kills_its_workers(tmp_path):
    pids, out = tmp_path / "pids", tmp_path / "out"
    pids.mkdir()
    cmd = [sys.executable, "-m", "engine.rollout", "--world", "plane", "--set", "width=16", "--set", "height=16",
           "--policy", "tests.test_rollout_lock:SlowPolicy", "--episodes", "2", "--ticks", "3000", "--workers", "2",
           "--out", str(out)]
    parent = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, PID_DIR: str(pids)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while len(workers) < 2 and time.time() < deadline and parent.poll() is None:
            time.sleep(0.2)
            workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, f"the workers did not start (rollout rc {parent.poll()})"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(w) for w in workers), "pool workers outlived the killed rollout"
        # The lock died with the rollout: the same command runs again at once (here: a short run).
        assert small(out, ticks=3)["episodes"] == 2
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for w in workers:  # only the workers this test started
            if alive(w):
                os.kill(w, signal.SIGKILL)
