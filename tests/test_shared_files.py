"""Files people share never run code, and damaged model weights are named (issue 20).

A world name of the form `module:attr` imports that module: allowed when the person running the program
names it (command line, Python), refused when a recording's meta.yaml or a model's model.yaml names it.
The hostile files use `os:system` with a command that would create a marker file.
"""

import shutil
import subprocess
import sys

import pytest
import yaml

from engine import Action, UntrustedWorldError, make_world, make_world_from_file
from engine.recording import Recording, RecordingMeta, RecordingWriter
from tests.conftest import ROOT


def record(path, world_name="plane", steps=6):
    world = make_world("plane", width=16, height=12)
    meta = RecordingMeta(world_name, world.config, 3, 20.0, deterministic=True)
    with RecordingWriter(path, meta, video=False) as rec:
        rec.write(world.reset(3), None, reset=True, seed=3)
        for i in range(steps):
            rec.write(world.step(Action(forward=True, yaw=5.0 * i)), Action(forward=True, yaw=5.0 * i))
    return path


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run(*args, timeout=180):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def hostile_recording(tmp_path, marker):
    rec = record(tmp_path / "rec")

    def attack(meta):
        meta["world"], meta["world_config"] = "os:system", {"command": f"touch {marker}"}

    edit_yaml(rec / "meta.yaml", attack)
    return rec


# -- recordings -------------------------------------------------------------------------------------------


def test_replay_verify_refuses_a_recording_that_names_a_module(tmp_path):
    marker = tmp_path / "pwned"
    rec = hostile_recording(tmp_path, marker)
    p = run("-m", "engine.replay", rec, "--headless", "--verify")
    assert not marker.exists(), "a recording's meta.yaml ran a command"
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    err = p.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert str(rec / "meta.yaml") in err and "'os:system'" in err and "--world os:system" in err


def test_verify_in_python_refuses_it_too(tmp_path):
    from engine.replay import verify

    marker = tmp_path / "pwned"
    rec = hostile_recording(tmp_path, marker)
    with pytest.raises(UntrustedWorldError, match="os:system"):
        verify(Recording(rec))
    with pytest.raises(UntrustedWorldError, match="meta.yaml"):
        make_world_from_file("os:system", {"command": f"touch {marker}"}, str(rec / "meta.yaml"))
    assert not marker.exists()


def test_a_world_named_on_the_command_line_may_be_a_module(tmp_path):
    # A recording of a module:Class world the user wrote: refused from the file, verified when the user names it.
    rec = record(tmp_path / "rec", world_name="engine.plane:PlaneWorld")
    p = run("-m", "engine.replay", rec, "--headless", "--verify")
    assert p.returncode == 2 and "--world engine.plane:PlaneWorld" in p.stderr, p.stderr
    p = run("-m", "engine.replay", rec, "--headless", "--verify", "--world", "engine.plane:PlaneWorld")
    assert p.returncode == 0 and "MATCH" in p.stdout, p.stderr
    assert make_world("engine.plane:PlaneWorld", width=8, height=8).config["width"] == 8  # Python: allowed
    # registered names still resolve from files
    world = make_world_from_file("plane", {"width": 8, "height": 8}, "some/meta.yaml")
    assert world.config["width"] == 8
    world.close()
    assert run("-m", "engine.replay", record(tmp_path / "ok"), "--headless", "--verify").returncode == 0


# -- models -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """The tiny preset with random weights, prompted by the plane world (seconds to build, no training)."""
    from worldmodel.autoencoder import FrameAutoencoder
    from worldmodel.checkpoint import save_model
    from worldmodel.config import load_config
    from worldmodel.dynamics import DynamicsTransformer

    cfg = load_config(ROOT / "assets" / "configs" / "model_tiny.yaml")
    out = tmp_path_factory.mktemp("models") / "small"
    save_model(out, cfg, FrameAutoencoder(cfg.autoencoder), DynamicsTransformer(cfg.dynamics, cfg.latent_shape),
               {"prompt_world": "plane", "prompt_config": {"width": 32, "height": 32}})
    return out


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_a_model_yaml_cannot_name_a_module_as_its_prompt_world(small_model, tmp_path):
    marker = tmp_path / "pwned"
    model = copy_model(small_model, tmp_path / "hostile")

    def attack(data):
        data["info"]["prompt_world"] = "os:system"
        data["info"]["prompt_config"] = {"command": f"touch {marker}"}

    edit_yaml(model / "model.yaml", attack)
    p = run("play.py", "--world", "dream", "--checkpoint", model, "--headless", "--ticks", "2")
    assert not marker.exists(), "a model.yaml ran a command"
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("error: ") and str(model / "model.yaml") in err and "'os:system'" in err
    assert "--set prompt_world=os:system" in err

    import worldmodel  # noqa: F401
    from worldmodel.dream import DreamWorld

    with pytest.raises(UntrustedWorldError, match="model.yaml"):
        DreamWorld(str(model))
    try:
        from worldmodel.vector import DreamVectorEnv
    except ImportError:  # gymnasium missing
        DreamVectorEnv = None
    if DreamVectorEnv is not None:
        with pytest.raises(UntrustedWorldError, match="model.yaml"):
            DreamVectorEnv(1, checkpoint=str(model))
    # a dream recording cannot smuggle one in through its config either
    with pytest.raises(UntrustedWorldError, match="meta.yaml"):
        make_world_from_file("dream", {"checkpoint": str(small_model), "prompt_world": "os:system",
                                       "prompt_config": {"command": f"touch {marker}"}}, "rec/meta.yaml")
    assert not marker.exists()
    # the caller may name it: the prompt world of the caller's choice is built
    dream = DreamWorld(str(small_model), prompt_world="engine.plane:PlaneWorld", prompt_config={"width": 32, "height": 32})
    assert dream.prompt_name == "engine.plane:PlaneWorld"
    dream.close()


def test_model_weights_are_checked_against_the_recorded_hash(small_model, tmp_path):
    from worldmodel.checkpoint import CheckpointError, file_hash, load_model

    recorded = yaml.safe_load((small_model / "model.yaml").read_text())["weights_hash"]
    assert recorded == file_hash(small_model / "model.safetensors") == load_model(small_model).hash

    damaged = copy_model(small_model, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(1, 9):  # flip bytes in the last tensor's data: still a valid safetensors file
        data[-i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged or was replaced"):
        load_model(damaged)
    p = run("play.py", "--world", "dream", "--checkpoint", damaged, "--headless", "--ticks", "2")
    assert p.returncode == 2 and "damaged or was replaced" in p.stderr and "Traceback" not in p.stderr, p.stderr

    # A model written before the hash was recorded still loads (unchecked).
    edit_yaml(damaged / "model.yaml", lambda d: d.pop("weights_hash"))
    assert load_model(damaged).hash == file_hash(weights)
    # A malformed hash is named.
    edit_yaml(damaged / "model.yaml", lambda d: d.update(weights_hash=12345))
    with pytest.raises(CheckpointError, match="weights_hash must be 16 lowercase hex digits"):
        load_model(damaged)


def test_the_shipped_model_records_its_hash():
    from worldmodel.checkpoint import file_hash, load_model

    shipped = ROOT / "assets" / "model"
    recorded = yaml.safe_load((shipped / "model.yaml").read_text())["weights_hash"]
    assert recorded == file_hash(shipped / "model.safetensors") == load_model(shipped).hash == "312ec453070407df"
