"""MIDS training on generated data with the tiny network: the schema reader skips bad rows, the
loss falls, FFAA's freezing holds, resuming continues exactly, validation metrics are computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")

from PIL import Image

from ffaa.mids.data import Augment, class_label, load_mids_data, make_batch
from ffaa.mids.decider import MidsDecider
from ffaa.mids.train import TrainConfig, Trainer, detection_metrics, train_mids

ANSWER = ("Image description: A face in {light} lighting.\nForgery reasoning: {reason}\n"
          "Analysis result: {claim}\nProbability: 0.5\nForgery type: None")
REASON = {"fake": "The skin is too smooth and the jaw boundary is blurred.",
          "real": "Lighting and shadows are consistent and the organs look natural."}


def write_dataset(folder, n, seed=0, bad_rows=False):
    """Coloured squares (reddish = fake, greenish = real) with three answers each; the answer's
    wording follows its claim, so image and text together determine the class."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        fake = bool(i % 2)
        colour = np.array([200, 60, 60] if fake else [60, 200, 60], dtype=np.int16)
        pixels = np.clip(colour + rng.integers(-40, 41, (40, 40, 3)), 0, 255).astype(np.uint8)
        name = f"img{i:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        claims = ["fake", "real", "fake"] if i % 3 else ["real", "fake", "real"]
        answers = [{"content": ANSWER.format(light="soft", reason=REASON[c], claim=c), "result": c,
                    "label": class_label(fake, c == "fake")} for c in claims]
        rows.append({"image": name, "cls_label": int(fake), "answers": answers})
    if bad_rows:
        rows.append({"image": "missing.png", "cls_label": 0, "answers": rows[0]["answers"]})
        rows.append({**rows[0], "cls_label": 7})
        wrong = json.loads(json.dumps(rows[1]))
        wrong["answers"][0]["label"] = 3 - wrong["answers"][0]["label"]
        rows.append(wrong)
        rows.append({**rows[0], "answers": [{"content": "no fields here", "result": "real", "label": 0}]})
        rows.append("not a row")
    path = folder / "data.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def tiny():
    decider = MidsDecider.tiny(seed=0)
    return decider.tokenizer, decider.image_processor


def fresh_net():
    return MidsDecider.tiny(seed=0).net


def test_reader_skips_bad_rows(tmp_path):
    data = load_mids_data(write_dataset(tmp_path, 4, bad_rows=True))
    assert len(data.samples) == 4
    assert data.skipped == {"missing images": 1, "bad cls_label": 1, "bad labels": 1,
                            "unparseable answers": 1, "malformed rows": 1}
    assert "4 rows, 5 skipped" in data.summary("train")
    sample = data.samples[0]
    assert sample.texts[0].startswith("Image description: A face") and "Analysis result" not in sample.texts[0]
    assert sample.labels == (0, 1, 0) and sample.claims == ("real", "fake", "real")


def test_augmentation_is_seeded_rgb_and_changes_pixels():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    always = Augment(p_jitter=1, p_blur=1, p_noise=1, p_jpeg=1)
    a, b, c = always(image, (0, 1, 2)), always(image, (0, 1, 2)), always(image, (0, 1, 3))
    assert a.mode == "RGB" and a.size == image.size
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert not np.array_equal(np.asarray(a), np.asarray(image))
    never = Augment(p_jitter=0, p_blur=0, p_noise=0, p_jpeg=0)
    assert np.array_equal(np.asarray(never(image, (0,))), np.asarray(image))


def test_batch_layout(tmp_path, tiny):
    tokenizer, processor = tiny
    data = load_mids_data(write_dataset(tmp_path, 3))
    batch = make_batch(data.samples, processor, tokenizer)
    assert batch.pixel_values.shape == (3, 3, 56, 56)
    assert batch.input_ids.shape[0] == 9 and batch.image_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert batch.labels.tolist() == [0, 1, 0, 3, 2, 3, 1, 0, 1]


def test_loss_falls_and_only_ffaa_trainables_change(tmp_path, tiny):
    tokenizer, processor = tiny
    data = load_mids_data(write_dataset(tmp_path, 16))
    net = fresh_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=8, batch_size=8, lr=1e-3, augment=False,
                         save_every=1000)
    result = train_mids(config, data, data, net=net, tokenizer=tokenizer, processor=processor, log=lambda m: None)
    assert result.steps == 16 and len(result.losses) == 16
    assert np.mean(result.losses[-3:]) < 0.3 * np.mean(result.losses[:3])
    after = net.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("text_encoder.") for k in changed)
    assert not any(k.startswith("image_encoder.embeddings.") for k in changed)
    assert any(k.startswith("image_encoder.encoder.layers.1.") for k in changed)
    assert "classifier.weight" in changed
    assert len(result.validation) == 8 and {"acc", "auc", "ap"} <= set(result.validation[0])
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert result.best["auc"] == max(v["auc"] for v in result.validation)


def seeded_trainer(out, max_steps, data, tokenizer, processor):
    """A trainer that saves every step, so runs cut at any step can be resumed and compared."""
    config = TrainConfig(out_dir=str(out), epochs=3, batch_size=4, lr=1e-3, max_steps=max_steps,
                         save_every=1, seed=3)
    return Trainer(fresh_net(), tokenizer, processor, data.samples, config, log=lambda m: None)


@pytest.fixture
def uninterrupted(tmp_path, tiny):
    """(trainer factory, a trainer run straight to step 5, its result) on 12 rows."""
    tokenizer, processor = tiny
    data = load_mids_data(write_dataset(tmp_path, 12))

    def trainer(out, max_steps):
        return seeded_trainer(out, max_steps, data, tokenizer, processor)

    straight = trainer(tmp_path / "a", 5)
    return trainer, straight, straight.run()


def test_resume_continues_from_the_saved_step(tmp_path, uninterrupted):
    trainer, straight, full = uninterrupted
    first = trainer(tmp_path / "b", 2).run()
    assert first.steps == 2
    state = json.loads((tmp_path / "b" / "last_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 2, 2)
    resumed_trainer = trainer(tmp_path / "b", 5)
    resumed = resumed_trainer.run(resume=True)
    assert resumed.steps == 5
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=0, atol=1e-6)
    a, b = straight.net.state_dict(), resumed_trainer.net.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    with pytest.raises(Exception, match="already holds a training run"):
        trainer(tmp_path / "b", 6).run()


def test_detection_metrics():
    m = detection_metrics([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3], [0, 1, 1, 1])
    assert m == {"acc": 0.75, "auc": 1.0, "ap": 1.0}
    assert np.isnan(detection_metrics([1, 1], [0.2, 0.9], [1, 1])["auc"])


def test_kill_between_checkpoint_renames_resumes_exactly(tmp_path, uninterrupted, monkeypatch):
    """The three `last` files are one commit: a save interrupted after the weights were renamed
    (a kill -9) must not pair new weights with an old state; resume finishes the commit."""
    import os

    trainer, straight, full = uninterrupted
    trainer(tmp_path / "b", 2).run()
    real_replace = os.replace

    def dies_before_the_state(src, dst):
        if str(dst).endswith("last_state.json"):
            raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_before_the_state)
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "b", 3).run(resume=True)
    monkeypatch.setattr(os, "replace", real_replace)
    resumed_trainer = trainer(tmp_path / "b", 5)
    resumed = resumed_trainer.run(resume=True)
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=0, atol=1e-6)
    a, b = straight.net.state_dict(), resumed_trainer.net.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert not list((tmp_path / "b").glob(".*tmp*"))


def test_resume_refuses_weights_of_another_step(tmp_path, tiny):
    from ffaa.errors import FfaaError
    from ffaa.mids.checkpoint import save_mids

    tokenizer, processor = tiny
    data = load_mids_data(write_dataset(tmp_path, 8))
    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=4, save_every=1, max_steps=1)
    Trainer(fresh_net(), tokenizer, processor, data.samples, config, log=lambda m: None).run()
    save_mids(fresh_net(), tmp_path / "run" / "last.safetensors", extra={"global_step": "7"})
    config.max_steps = 2
    with pytest.raises(FfaaError, match="last.safetensors is from step 7 but last_state.json from step 1"):
        Trainer(fresh_net(), tokenizer, processor, data.samples, config, log=lambda m: None).run(resume=True)


def test_one_class_validation_is_announced(tmp_path, tiny):
    tokenizer, processor = tiny
    data = load_mids_data(write_dataset(tmp_path, 4))
    real_only = type(data)([s for s in data.samples if not s.image_is_fake], data.skipped)
    lines = []
    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=4, max_steps=1, augment=False)
    result = train_mids(config, data, real_only, net=fresh_net(), tokenizer=tokenizer, processor=processor,
                        log=lines.append)
    assert any("every validation image is real: AUC and AP are undefined" in line for line in lines)
    assert np.isnan(result.best["auc"]) and (tmp_path / "run" / "best.safetensors").is_file()
    # Written as standard JSON (null, not NaN), and read back as NaN by a resume.
    text = (tmp_path / "run" / "last_state.json").read_text()
    assert "NaN" not in text and json.loads(text)["best"]["auc"] is None
    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=2, batch_size=4, max_steps=2, augment=False)
    again = train_mids(config, data, real_only, net=fresh_net(), tokenizer=tokenizer, processor=processor,
                       resume=True, log=lines.append)
    assert again.steps == 2 and np.isnan(again.validation[0]["auc"])
