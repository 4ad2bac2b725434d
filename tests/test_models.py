"""The registry of known models (`ffaa.models`) is the one source of their names and sizes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ffaa.backends import hub
from ffaa.errors import WeightsNotFoundError
from ffaa.models import CLIP_VIT_L_336, FFAA, KNOWN_VISION_TOWERS, known_vision_tower
from ffaa.prompts import load_prompt_set


def test_ffaa_release_facts():
    assert FFAA.model_id == "thu-huangzc/ffaa-mistral-7b" and FFAA.revision is None
    assert (FFAA.clip.repo_id, FFAA.t5.repo_id, FFAA.mids_file) == ("openai/clip-vit-large-patch14-336", "t5-base",
                                                                  "mids.pth")
    assert FFAA.prompt_set == load_prompt_set().version  # the checkpoint's prompts are the packaged ones


def test_every_module_reads_the_registry():
    from ffaa.commands import common, mids

    assert common.DEFAULT_MODEL == FFAA.model_id
    assert (mids.FFAA_CLIP, mids.FFAA_T5) == (FFAA.clip.repo_id, FFAA.t5.repo_id)
    pytest.importorskip("torch")
    from ffaa.mids import checkpoint, net

    assert (net.FFAA_CLIP, net.FFAA_T5) == (FFAA.clip.repo_id, FFAA.t5.repo_id)
    assert net.MidsConfig.ffaa().clip == FFAA.clip.repo_id
    assert checkpoint.FFAA_CLIP_LAYERS == FFAA.clip.num_hidden_layers == 24


def test_known_vision_towers_by_hub_id_or_local_folder_name():
    assert known_vision_tower("openai/clip-vit-large-patch14-336") is CLIP_VIT_L_336
    assert known_vision_tower("models/clip-vit-large-patch14-336") is CLIP_VIT_L_336  # FFAA's config says this
    assert known_vision_tower("openai/clip-vit-base-patch32") is None and known_vision_tower("") is None
    assert CLIP_VIT_L_336.config()["image_size"] == 336 and "model" not in CLIP_VIT_L_336.config()
    with pytest.raises(TypeError):
        KNOWN_VISION_TOWERS["x"] = CLIP_VIT_L_336  # type: ignore[index]


def test_one_hub_id_rule_and_one_not_found_message():
    assert hub.is_hub_id("thu-huangzc/ffaa-mistral-7b") and hub.is_hub_id("t5-base/x.y_z")
    for local in ("./models/x", "/models/x", "~/x", "a/b/c", "name", "a/b c", ".hidden/x"):
        assert not hub.is_hub_id(local), local
    with pytest.raises(WeightsNotFoundError, match="model folder not found: a/b/c"):
        hub.check_hub_id("a/b/c", "model")
    message = hub.not_found_message("someone/model", "offline")
    assert "`hf download someone/model --local-dir DIR`" in message and "--model DIR" in message
    assert f"about {FFAA.model.size}" in message and "FFAA_CACHE" in message


def test_the_registry_is_light():
    code = ("import sys, ffaa.models, ffaa.backends.hub\n"
            "assert not {'torch', 'huggingface_hub'} & set(sys.modules), sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True)
