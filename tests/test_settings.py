"""The dream's settings in model.yaml, typed and checked once (worldmodel/settings.py)."""

import dataclasses

import pytest
import yaml

from worldmodel.settings import PROVENANCE_KEYS, SETTING_KEYS, DreamSettings, SettingsError


def test_the_shipped_model_settings_are_read_into_one_value():
    from worldmodel.checkpoint import load_model
    from worldmodel.dream import SHIPPED_MODEL

    model = load_model(SHIPPED_MODEL)
    s = model.settings
    info = model.info
    assert s.prompt_world == info["prompt_world"] and dict(s.prompt_config) == info["prompt_config"]
    assert s.context_noise == info["sampling"]["context_noise"]
    assert (s.camera, s.memory, s.memory_first) == (info["dream"]["camera"], info["dream"]["memory"],
                                                    info["dream"]["memory_first"])
    assert s.rules is s.motion and s.motion.walk == info["motion"]["walk"]
    assert "chosen_by" not in s.memory_settings and s.memory_settings["budget"] == info["memory"]["budget"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.camera = "model"
    with pytest.raises(TypeError):
        s.memory_settings["budget"] = 1  # read-only, like the rest


def test_a_model_that_says_nothing_dreams_plainly():
    s = DreamSettings.from_info({})
    assert (s.prompt_world, s.context_noise, s.camera, s.memory, s.memory_first) == ("arena", 0.0, "model", False, False)
    assert s.rules is None and dict(s.memory_settings) == {} and s.memory_first_trust is None


def test_provenance_is_not_read():
    """Two infos that differ only in how their settings were chosen give the same settings."""
    base = {"sampling": {"context_noise": 0.2}, "dream": {"memory": True}, "memory": {"budget": 3000}}
    noted = {"sampling": {"context_noise": 0.2, "chosen_by": "a sweep"}, "dream": {"memory": True, "chosen_by": "x"},
             "memory": {"budget": 3000, "chosen_by": "y"}, "fine_tune": "400 steps", "stage": "dynamics", "step": 7}
    assert DreamSettings.from_info(base) == DreamSettings.from_info(noted)
    assert not set(SETTING_KEYS) & set(PROVENANCE_KEYS)


@pytest.mark.parametrize("info, named", [
    ({"sampling": {"context_noise": 1.0}}, "info.sampling.context_noise"),
    ({"sampling": {"level": 0.1}}, "info.sampling"),
    ({"dream": {"camera": "mouse"}}, "info.dream.camera"),
    ({"dream": {"camera": "action"}}, "info.motion"),
    ({"dream": {"memory": "yes"}}, "info.dream.memory must be true or false"),
    ({"dream": {"memory_first_trust": [0.5, 0.1]}}, "info.dream.memory_first_trust"),
    ({"memory": {"budgett": 5}}, "budgett"),
    ({"motion": {"walk": "fast"}}, "info.motion must be a mapping of numbers"),
    ({"prompt_config": [1, 2]}, "info.prompt_config"),
    ({"render_size": [128]}, "info.render_size"),
    ({"prompt_world": 3}, "info.prompt_world"),
])
def test_each_bad_setting_is_named(info, named):
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")) as e:
        DreamSettings.from_info(info, "m/model.yaml")
    assert str(e.value).startswith("m/model.yaml: ") and "\n" not in str(e.value)


def test_the_callers_choices_are_checked_the_same_way():
    s = DreamSettings.from_info({"dream": {"memory": True}})
    assert s.choose(memory=False).memory is False and s.memory is True  # a new value; the model's stays
    assert s.choose().memory is True  # None keeps the model's
    assert s.choose(memory_settings={"budget": 100}).memory_settings["budget"] == 100
    assert s.choose(memory_first_trust=[0, 0.5]).memory_first_trust == (0.0, 0.5)
    for kwargs, named in (({"camera": "mouse"}, "camera must be"), ({"camera": "action"}, "fitted motion"),
                          ({"memory_settings": {"bogus": 1}}, "bogus"), ({"memory_first_trust": [1, 0]}, "memory_first_trust"),
                          ({"context_noise": -0.1}, "context_noise")):
        with pytest.raises(SettingsError, match=named):
            s.choose(**kwargs)


def test_a_writer_cannot_save_what_load_model_would_refuse(tmp_path):
    from worldmodel.checkpoint import load_model, save_loaded
    from tests.randmodel import random_model_dir

    model = load_model(random_model_dir(tmp_path / "m"))
    for info, named in (({**model.info, "colour": 1}, "colour"), ({**model.info, "dream": {"camera": "mouse"}}, "camera")):
        with pytest.raises(ValueError, match=named):
            save_loaded(tmp_path / "out", model, info)
        assert not (tmp_path / "out").exists()  # refused before anything was written
    save_loaded(tmp_path / "out", model, {**model.info, "dream": {"memory": True}})
    assert load_model(tmp_path / "out").settings.memory is True
    assert yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())["info"]["dream"] == {"memory": True}
