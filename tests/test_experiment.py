"""One experiment object: names resolved once, nothing written, the data folder's rule,
and the same experiment on another event or with other settings.

References used: the profiles and events tables themselves, and the environment.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sarslide import ablation, datasets
from sarslide.experiment import DATA_DIR_ENV, Experiment, resolve_data_dir
from sarslide.profiles import PROFILES, get_profile


def test_create_resolves_the_names_once_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SARSLIDE_PROFILE", "paper")
    folder = tmp_path / "not-yet"
    exp = Experiment.create("Kaikōura", None, folder, "cpu")
    assert exp.event == "kaikoura"  # as sarslide.events spells it
    assert exp.profile is PROFILES["paper"]  # $SARSLIDE_PROFILE
    assert exp.data_dir == folder and exp.device == "cpu"
    assert not folder.exists()  # created by whatever first writes to it
    tuned = get_profile("demo").with_overrides(top_k=3)
    assert Experiment.create(profile=tuned).profile is tuned  # taken as it is
    with pytest.raises(KeyError, match="unknown event 'atlantis'"):
        Experiment.create("atlantis")
    with pytest.raises(KeyError, match="unknown profile 'colab'"):
        Experiment.create("hokkaido", "colab")


def test_the_data_folder_is_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert Experiment.create().data_dir == tmp_path / "env"
    assert Experiment.create(data_dir=tmp_path / "arg").data_dir == tmp_path / "arg"
    assert not (tmp_path / "env").exists()
    assert resolve_data_dir() == tmp_path / "env" and (tmp_path / "env").is_dir()
    named = resolve_data_dir(tmp_path / "named", create=False)
    assert named == tmp_path / "named" and not named.exists()


def test_another_event_and_other_settings_keep_the_rest(tmp_path):
    exp = Experiment.create("hokkaido", "demo", tmp_path, "cpu")
    arm = exp.for_event("kaikoura")
    assert (arm.event, arm.profile, arm.data_dir, arm.device) == (
        "kaikoura",
        exp.profile,
        tmp_path,
        "cpu",
    )
    balanced = exp.with_overrides(few_shot_draw="balanced")
    assert balanced.profile == exp.profile.with_overrides(few_shot_draw="balanced")
    assert (balanced.event, balanced.data_dir) == (exp.event, exp.data_dir)
    assert exp.profile.few_shot_draw == "random"  # frozen: the original is unchanged
    with pytest.raises(AttributeError):
        exp.event = "kaikoura"
    assert pickle.loads(pickle.dumps(exp)) == exp  # travels to dask workers


def test_every_folder_of_an_experiment_is_in_its_data_folder(tmp_path):
    small = get_profile("demo").with_overrides(
        synthetic_shape=(256, 256), chip_size=32, split_scheme="text"
    )
    exp = Experiment.create("hokkaido", small, tmp_path / "data")
    datasets.prepare_event(exp)
    made = {p.name for p in (tmp_path / "data").iterdir()}
    assert made == {"cubes", "chips"}
    out = ablation.results_dir(exp)
    assert out.parent == tmp_path / "data" / "ablation"
    assert out.name == f"hokkaido-demo-{ablation.results_key(exp)}"
    other = exp.with_overrides(data_seed=1)
    assert ablation.results_key(other) != ablation.results_key(exp)
    assert Path(out).name != ablation.results_dir(other).name
