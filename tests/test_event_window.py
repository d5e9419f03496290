"""The drafter's event window: its default, its placement in the clip, and the windows an EventGPT refuses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eventspec import config as config_mod
from eventspec.event_window import place_event_window
from real_checkpoints import write_original_checkpoint


def real_config(drafter_path, **samples) -> dict:
    return {"data": {"source": "dsec", "root": "/data/DSEC"}, "models": {"drafter": {"path": str(drafter_path)}},
            "samples": samples}  # fmt: skip


@pytest.fixture
def eventgpt(tmp_path):
    return write_original_checkpoint(tmp_path)[0]


def test_eventgpt_checkpoint_reads_50_ms_at_the_end_of_the_clip(eventgpt):
    cfg = config_mod.validate(real_config(eventgpt))
    assert (cfg["samples"]["event_window_ms"], cfg["samples"]["event_window_at"]) == (50, "end")


def test_toy_drafter_reads_the_whole_clip_by_default():
    assert config_mod.validate({"samples": {"window_ms": 800}})["samples"]["event_window_ms"] == 800


def test_1000_ms_window_with_an_eventgpt_checkpoint_is_refused_naming_the_setting(eventgpt):
    with pytest.raises(
        config_mod.ConfigError,
        match=r"samples\.event_window_ms: 1000 ms with an EventGPT drafter.*samples\.allow_long_event_window: true",
    ):
        config_mod.validate(real_config(eventgpt, event_window_ms=1000))
    with pytest.raises(config_mod.ConfigError, match=r"samples\.event_window_ms: 100 ms"):
        config_mod.validate(real_config(eventgpt, event_window_ms=100))
    assert config_mod.validate(real_config(eventgpt, event_window_ms=99))["samples"]["event_window_ms"] == 99


def test_snakemake_refuses_it_before_any_job(eventgpt, tmp_path):
    """The workflow resolves the window from the whole config (workflow/rules/common.smk) and stops naming it."""
    configfile = tmp_path / "real.yaml"
    configfile.write_text(yaml.safe_dump(real_config(eventgpt, event_window_ms=1000) | {"results": str(tmp_path / "r")}))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(configfile)],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode != 0
    assert "samples.event_window_ms: 1000 ms with an EventGPT drafter" in res.stdout + res.stderr


def test_long_window_when_the_setting_allows_it(eventgpt):
    cfg = config_mod.validate(real_config(eventgpt, event_window_ms=1000, allow_long_event_window=True))
    assert cfg["samples"]["event_window_ms"] == 1000


def test_long_window_for_other_drafters(tmp_path):
    llava = tmp_path / "llava"
    llava.mkdir()
    (llava / "config.json").write_text(json.dumps({"model_type": "llava"}))
    assert config_mod.validate(real_config(llava, event_window_ms=1000))["samples"]["event_window_ms"] == 1000
    assert config_mod.validate({"samples": {"event_window_ms": 1000}})["samples"]["event_window_ms"] == 1000  # toy


def test_event_window_longer_than_the_clip_is_refused():
    with pytest.raises(config_mod.ConfigError, match=r"samples\.event_window_ms: 1200 ms is longer than .*window_ms"):
        config_mod.validate({"samples": {"event_window_ms": 1200}})


def test_event_window_placement_in_the_clip():
    assert place_event_window(1_000_000, 2_000_000, 50_000, "end") == (1_950_000, 2_000_000)
    assert place_event_window(1_000_000, 2_000_000, 50_000, "start") == (1_000_000, 1_050_000)
    assert place_event_window(1_000_000, 2_000_000, 50_000, "center") == (1_475_000, 1_525_000)
