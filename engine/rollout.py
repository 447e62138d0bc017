"""Roll out many episodes of a policy or script against a world, in parallel processes, as recordings.

    python -m engine.rollout --world arena --policy explore --episodes 200 --ticks 500 --out data/train \\
        --split train --workers 2
    python -m engine.rollout --world plane --script assets/scripts/tour.yaml --episodes 4 --out runs/tours

Each episode is one recording directory `OUT/ep_NNNNN` (reset seed = the episode's level seed); a
`summary.json` lists episode lengths, returns and ticks/s. Seeds come from `--split` (the world's
train/validation/test ranges, for worlds that define them) or from `--seed-start` upwards, so data
sets of different splits never share a level. An existing episode directory that is complete is
skipped, so an interrupted run is resumed by running the same command again; a complete episode that
another command recorded (another world config or resolution, policy, seed, length, tick rate, reward or
done hook) is refused with a message naming the differences, before any work. An unfinished episode is
redone; a directory holding files the rollout did not write is never deleted (refused). One rollout at a time
writes into an `--out`: it holds `OUT/.rollout.lock` (with its pid) while it runs, and a second one is
refused; the lock of a process that died is taken over. The worker processes die with the rollout.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from engine.action import Action
from engine.cli import MAX_TICK_RATE, Parser, check_positive, integer, number, parse_set
from engine.files import FolderBusyError, folder_lock
from engine.recording import (FRAMES_DIR, META_FILE, PREFIX_FILE, TICKS_FILE, VIDEO_FILE, Recording, RecordingError,
                              RecordingMeta, RecordingWriter)
from engine.script import PolicyError, PolicySource, ScriptError, ScriptSource, load_policy, load_script
from engine.world import Observation, WorldNotFoundError, loop_tick_rate, make_world, validate_observation, world_factory

# A reward hook: reward(prev_obs, action, obs) -> float; a termination hook: done(obs) -> bool.
RewardFn = Callable[[Observation, Action, Observation], float]
DoneFn = Callable[[Observation], bool]


LOCK_FILE = ".rollout.lock"
MAX_WORKERS = 256  # processes a rollout may start (one core each)


class RolloutMismatchError(ValueError):
    """An --out holding episodes of another command, or files a rollout did not write."""


def out_lock(out: Path):
    """Hold `out/.rollout.lock` while a rollout writes into `out` (engine.files.folder_lock): FolderBusyError when a
    live process holds it."""
    return folder_lock(out, LOCK_FILE, "rollout")


def _die_with_parent(parent: int) -> None:
    """Pool initializer: this worker is killed when the rollout process dies (Linux), or exits if it already has."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the check between episodes still stops orphans
        pass
    if os.getppid() != parent:
        os._exit(1)


_PROGRESS = None  # a worker's progress queue, given by the pool initializer


def _init_worker(parent: int, queue) -> None:
    global _PROGRESS
    _die_with_parent(parent)
    _PROGRESS = queue


@dataclass
class EpisodeJob:
    index: int
    seed: int  # the world's reset seed
    policy_seed: int
    out: str


@dataclass
class EpisodeResult:
    index: int
    seed: int
    ticks: int
    ret: float
    seconds: float
    path: str
    skipped: bool = False


def _load_callable(spec: str | None, what: str) -> Callable | None:
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise PolicyError(f"cannot load the {what} hook {spec!r} (expected module:callable): {e}") from e


def episode_seeds(world: str, split: str | None, episodes: int, seed_start: int, offset: int) -> list[tuple[int, int]]:
    """(level seed, policy seed) per episode. With a split, both come from that split's seed range."""
    if split is None:
        return [(seed_start + i, seed_start + i) for i in range(offset, offset + episodes)]
    module = getattr(world_factory(world), "__module__", "")
    package = module.rsplit(".", 1)[0]
    try:
        splits = importlib.import_module(f"{package}.splits")
    except ImportError:
        raise ValueError(f"world {world!r} defines no train/validation/test splits; use --seed-start") from None
    levels = splits.split_seeds(split, episodes, offset)
    # Policy seeds from the far half of the same range: a separate stream that stays inside the split.
    half = len(splits.SPLITS[split]) // 2
    policies = splits.split_seeds(split, episodes, half + offset)
    return list(zip(levels, policies))


def _is_complete(path: Path) -> bool:
    try:
        return Recording(path).meta.status == "complete"
    except RecordingError:
        return False


# What a rollout writes into an episode directory (engine.recording's files and their temporary names).
_RECORDING_FILES = {META_FILE, META_FILE + ".tmp", TICKS_FILE, VIDEO_FILE, PREFIX_FILE, PREFIX_FILE + ".tmp"}


def foreign_files(path: Path) -> list[str]:
    """Entries of an episode directory that a rollout did not write (a user's file, another program's)."""
    found = []
    for entry in sorted(path.iterdir()):
        if entry.name == FRAMES_DIR and entry.is_dir():
            found += [f"{FRAMES_DIR}/{f.name}" for f in sorted(entry.iterdir())
                      if not (f.is_file() and f.name.split(".", 1)[0].isdigit() and f.name.split(".", 1)[1] in ("npz", "npz.tmp"))]
        elif entry.name not in _RECORDING_FILES or not entry.is_file():
            found.append(entry.name)
    return found


def _remove_unfinished(path: Path) -> None:
    """Delete an episode directory a crash left unfinished, after checking that the rollout wrote all of it."""
    foreign = foreign_files(path)
    if foreign:
        raise RolloutMismatchError(f"{path} holds files a rollout did not write ({', '.join(foreign[:5])}"
                                   f"{', ...' if len(foreign) > 5 else ''}); nothing was deleted. Move them away, "
                                   f"or choose another --out")
    shutil.rmtree(path)


def episode_mismatch(path: Path, expected: dict[str, Any]) -> list[str]:
    """How the complete episode at `path` differs from what the command would record ([] when it matches)."""
    rec = Recording(path)
    meta, extra = rec.meta, rec.meta.extra
    recorded = {"world": meta.world, "config": _plain_json(meta.world_config), "seed": meta.seed,
                "policy_seed": extra.get("policy_seed"), "policy": extra.get("policy"), "tick_rate": meta.tick_rate,
                # Recordings from before the requested length was noted: their length stands for it.
                "ticks": extra.get("ticks", len(rec) - 1), "reward": extra.get("reward"), "done": extra.get("done")}
    return [f"{key} {recorded[key]!r} (this command: {value!r})" for key, value in expected.items()
            if recorded[key] != value]


def _plain_json(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def check_existing(jobs: list["EpisodeJob"], expected: dict[str, Any]) -> None:
    """Before any work: every existing episode directory is either a complete episode of this very command
    (kept, skipped) or an unfinished one the rollout wrote (redone); anything else is refused, naming it."""
    for job in jobs:
        out = Path(job.out)
        if not out.exists():
            continue
        if not out.is_dir():
            raise RolloutMismatchError(f"{out} is a file, not an episode directory; move it away or choose another --out")
        if _is_complete(out):
            differences = episode_mismatch(out, expected | {"seed": job.seed, "policy_seed": job.policy_seed})
            if differences:
                raise RolloutMismatchError(
                    f"{out} is a complete episode of another rollout: " + "; ".join(differences)
                    + ". Nothing was changed. Rerun with that episode's settings to resume it, or use another --out "
                      "(or --offset) for the new settings")
        elif foreign_files(out):
            _remove_unfinished(out)  # raises, naming the files


def _worker(args: tuple[dict[str, Any], list[EpisodeJob]]) -> list[EpisodeResult]:
    settings, jobs = args
    queue = _PROGRESS
    try:
        import torch

        torch.set_num_threads(1)  # one core per worker process
    except ImportError:
        pass
    results = []
    world = make_world(settings["world"], **settings["config"])
    reward_fn = _load_callable(settings.get("reward"), "reward")
    done_fn = _load_callable(settings.get("done"), "done")
    try:
        for job in jobs:
            if os.getppid() != settings["parent"]:
                os._exit(1)  # the rollout is gone: write nothing more into its --out
            results.append(_run_episode(world, settings, job, reward_fn, done_fn, queue))
    finally:
        world.close()
    return results


def _run_episode(world, settings: dict[str, Any], job: EpisodeJob, reward_fn: RewardFn | None,
                 done_fn: DoneFn | None, queue) -> EpisodeResult:
    out = Path(job.out)
    if _is_complete(out):  # check_existing made sure it is an episode of this command
        rec = Recording(out)
        return EpisodeResult(job.index, job.seed, len(rec) - 1, float(rec.meta.extra.get("return", 0.0)), 0.0, str(out),
                             skipped=True)
    if out.exists():
        _remove_unfinished(out)  # an episode cut short by a crash is redone from its start
    if settings.get("script"):
        source = ScriptSource(load_script(settings["script"], settings["tick_rate"]), name=Path(settings["script"]).name)
    else:
        source = PolicySource(load_policy(settings["policy"]), name=settings["policy"])
    name = settings["world"]
    t0 = time.perf_counter()
    meta = RecordingMeta(name, dict(world.config), job.seed, settings["tick_rate"],
                         deterministic=bool(getattr(world, "deterministic", False)),
                         extra={"policy": settings.get("policy") or settings.get("script"), "policy_seed": job.policy_seed,
                                "ticks": settings["ticks"], "reward": settings.get("reward"), "done": settings.get("done")})
    ret, ticks, pending = 0.0, 0, 0
    with RecordingWriter(out, meta, video=settings["video"]) as rec:
        source.reset(job.policy_seed)
        obs = validate_observation(world.reset(job.seed), name, 0)
        rec.write(obs, None, reset=True, seed=job.seed)
        for _ in range(settings["ticks"]):
            action = source.next(obs)
            if action is None:
                break
            prev, obs = obs, validate_observation(world.step(action), name, ticks + 1)
            rec.write(obs, action)
            ticks += 1
            if reward_fn is not None:
                ret += float(reward_fn(prev, action, obs))
            pending += 1
            if pending >= 50 and queue is not None:
                queue.put(pending)
                pending = 0
            if done_fn is not None and done_fn(obs):
                break
        rec.meta.extra["return"] = ret  # written with the status "complete" when the recording closes
    if queue is not None and pending:
        queue.put(pending)
    return EpisodeResult(job.index, job.seed, ticks, ret, time.perf_counter() - t0, str(out))


def rollout(world: str, out: Path, episodes: int, ticks: int, policy: str | None = None, script: str | None = None,
            workers: int = 1, split: str | None = None, seed_start: int = 0, offset: int = 0,
            config: dict[str, Any] | None = None, tick_rate: float = 20.0, video: bool = False,
            reward: str | None = None, done: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the episodes (in `workers` processes) and write recordings + summary.json under `out`."""
    if (policy is None) == (script is None):
        raise ValueError("give exactly one of a policy or a script")
    if episodes < 1 or ticks < 1 or not 1 <= workers <= MAX_WORKERS or episodes > 1_000_000:
        raise ValueError(f"episodes must be in [1, 1000000], ticks >= 1 and workers in [1, {MAX_WORKERS}] "
                         f"(got {episodes}, {ticks}, {workers})")
    check_positive(tick_rate, "--tick-rate")
    config = loop_tick_rate(world, config or {}, tick_rate)  # the world steps at the rate the recordings claim
    probe = make_world(world, **config)  # fail fast, in this process, on a bad world name or config
    world_config = _plain_json(dict(probe.config))
    probe.close()
    if script:
        load_script(script, tick_rate)
    else:
        load_policy(policy)
    seeds = episode_seeds(world, split, episodes, seed_start, offset)
    out.mkdir(parents=True, exist_ok=True)
    with out_lock(out):  # one rollout per --out at a time
        jobs = [EpisodeJob(i, s, p, str(out / f"ep_{offset + i:05d}")) for i, (s, p) in enumerate(seeds)]
        check_existing(jobs, {"world": world, "config": world_config, "policy": policy or script, "tick_rate": tick_rate,
                              "ticks": ticks, "reward": reward, "done": done})
        settings = dict(world=world, config=config, policy=policy, script=script, ticks=ticks, tick_rate=tick_rate,
                        video=video, reward=reward, done=done, parent=os.getpid())
        t0 = time.perf_counter()
        from tqdm import tqdm

        bar = tqdm(total=episodes * ticks, unit="tick", desc=f"{world} rollouts", disable=not progress, smoothing=0.05)
        results: list[EpisodeResult] = []
        if workers == 1:
            reward_fn, done_fn = _load_callable(reward, "reward"), _load_callable(done, "done")
            w = make_world(world, **config)
            try:
                for job in jobs:
                    r = _run_episode(w, settings, job, reward_fn, done_fn, None)
                    bar.update(r.ticks if not r.skipped else ticks)
                    results.append(r)
            finally:
                w.close()
        else:
            # 'spawn': GL contexts and threads do not survive fork; each worker opens its own world. No Manager
            # process: the progress queue is handed to the workers as they start, and they die with this process.
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            shards = [(settings, jobs[k::workers]) for k in range(workers)]
            with ctx.Pool(workers, initializer=_init_worker, initargs=(os.getpid(), queue)) as pool:
                pending = pool.map_async(_worker, shards)
                while not pending.ready():
                    pending.wait(0.2)
                    while not queue.empty():
                        bar.update(queue.get())
                for shard in pending.get():
                    results.extend(shard)
        bar.close()
        wall = time.perf_counter() - t0
        results.sort(key=lambda r: r.index)
        done_ticks = sum(r.ticks for r in results if not r.skipped)
        summary = {
            "world": world, "config": config, "policy": policy, "script": script, "split": split,
            "episodes": len(results), "ticks_per_episode": ticks, "workers": workers,
            "total_ticks": sum(r.ticks for r in results), "new_ticks": done_ticks, "wall_s": round(wall, 2),
            "ticks_per_s": round(done_ticks / max(wall, 1e-9), 1),
            "mean_return": sum(r.ret for r in results) / max(len(results), 1),
            "episodes_detail": [asdict(r) for r in results],
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m engine.rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("--world", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--policy", help="a policy name (e.g. explore, random) or module:callable")
    g.add_argument("--script", help="a YAML action script")
    p.add_argument("--episodes", type=integer(1, 1_000_000), required=True)
    p.add_argument("--ticks", type=integer(1, 100_000_000), required=True, help="ticks per episode (at most)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=integer(1, MAX_WORKERS), default=1,
                   help=f"parallel processes (one core each; at most {MAX_WORKERS})")
    p.add_argument("--split", choices=["train", "validation", "test"], default=None,
                   help="take level seeds from this split of the world's seed ranges")
    p.add_argument("--seed-start", type=integer(0, 2**31 - 1), default=0, help="without --split: first reset seed")
    p.add_argument("--offset", type=integer(0, 1_000_000_000), default=0, help="skip this many episodes' seeds (to extend a data set)")
    p.add_argument("--set", dest="world_set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--tick-rate", type=number(0, MAX_TICK_RATE, lo_open=True), default=20.0)
    p.add_argument("--video", action="store_true", help="also write an mp4 per episode")
    p.add_argument("--reward", default=None, help="module:callable reward(prev_obs, action, obs) -> float")
    p.add_argument("--done", default=None, help="module:callable done(obs) -> bool (ends an episode)")
    args = p.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out}: that is an existing file; give a directory to write the episodes into",
              file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: --out {args.out}: cannot write there ({e.strerror or e})", file=sys.stderr)
        return 2
    try:
        config = parse_set(args.world_set, "--set", "width=64")
        summary = rollout(args.world, args.out, args.episodes, args.ticks, args.policy, args.script, args.workers,
                          args.split, args.seed_start, args.offset, config, args.tick_rate, args.video,
                          args.reward, args.done)
    except (ValueError, TypeError, WorldNotFoundError, PolicyError, ScriptError, RecordingError, FolderBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk filled up, a file could not be written: what was written stays readable
        print(f"error: {e.filename or args.out}: {e.strerror or e} (the episodes written so far are kept; rerun to "
              f"resume)", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "episodes_detail"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
