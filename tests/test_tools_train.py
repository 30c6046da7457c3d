"""tools/train: data and targets, a few training steps on coco_mini, resume, and the exported interface."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ANNOTATIONS = DATA / "coco_mini" / "person_keypoints.json"
IMAGES = DATA / "coco_mini" / "images"
PEOPLE = [196141, 217285]  # coco_mini images with several labelled persons

pytestmark = pytest.mark.skipif(not ANNOTATIONS.is_file(), reason=f"needs coco_mini under {DATA}")
torch = pytest.importorskip("torch", reason="the trainer needs PyTorch: pip install -e .[train] (torch==2.13.0 CPU)")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgepose.errors import InputError  # noqa: E402
from edgepose.topology import BODYPOSENET  # noqa: E402
from tools.train.data import Augment, CocoPoses, flip_keypoints  # noqa: E402
from tools.train.export import HEATMAP_NAME, INPUT_NAME, PAF_NAME, export_onnx, load_checkpoint  # noqa: E402
from tools.train.train import TrainConfig, Trainer  # noqa: E402

TINY = {"backbone": "mobilenet", "width": 0.25, "stage_channels": 32, "refinement_stages": 1}


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(annotations=str(ANNOTATIONS), images=str(IMAGES), out=str(out), epochs=1, batch_size=2,
                lr=2e-3, warmup_steps=1, input_size=(96, 128), deploy_size=(288, 384), model=dict(TINY))
    base.update(kw)
    return TrainConfig(**base)


def _dataset(**kw) -> CocoPoses:
    return CocoPoses(ANNOTATIONS, IMAGES, input_size=(96, 128), image_ids=PEOPLE, **kw)


def test_sample_shapes_and_targets():
    ds = _dataset(augment=Augment.none())
    s = ds[0]
    assert s["image"].shape == (3, 96, 128) and s["image"].dtype == np.float32
    assert s["heatmap"].shape == (19, 12, 16) and s["paf"].shape == (38, 12, 16) and s["mask"].shape == (1, 12, 16)
    assert -0.5 <= s["image"].min() and s["image"].max() < 0.5  # x / 256 - 0.5
    assert s["heatmap"][:18].max() > 0.9  # labelled keypoints are drawn
    assert np.abs(s["paf"]).max() > 0.9
    # The same epoch and index always give the same sample (resume relies on it).
    aug = _dataset(seed=3)
    np.testing.assert_array_equal(aug.sample(1, epoch=2)["paf"], aug.sample(1, epoch=2)["paf"])
    assert not np.array_equal(aug.sample(1, epoch=2)["image"], aug.sample(1, epoch=3)["image"])


def test_flip_mirrors_heatmaps_and_pafs():
    ds = _dataset(augment=Augment.none())
    kps = ds.keypoints(0)
    crop = np.full((96, 128, 3), 128, np.uint8)
    scaled = kps.copy()
    scaled[:, :, :2] *= 0.15  # a 640-wide image into a 128-wide crop, roughly
    ones = np.ones((96, 128), np.uint8)
    plain = ds.render(crop, scaled, ones)
    flipped = ds.render(crop, flip_keypoints(scaled, 128), ones)
    swap = list(range(19))
    for a, b in BODYPOSENET.flip_pairs:
        swap[a], swap[b] = b, a
    np.testing.assert_allclose(flipped["heatmap"], plain["heatmap"][swap, :, ::-1], atol=1e-5)
    # Limb k of the flipped image is the mirror of its left/right twin: x negated, y kept.
    limbs = {tuple(l): k for k, l in enumerate(BODYPOSENET.limbs)}
    for k, (a, b) in enumerate(BODYPOSENET.limbs):
        twin = limbs[(swap[a], swap[b])]
        np.testing.assert_allclose(flipped["paf"][2 * k], -plain["paf"][2 * twin, :, ::-1], atol=1e-5)
        np.testing.assert_allclose(flipped["paf"][2 * k + 1], plain["paf"][2 * twin + 1, :, ::-1], atol=1e-5)


def test_crowd_and_unlabelled_people_are_masked():
    ds = CocoPoses(ANNOTATIONS, IMAGES, input_size=(288, 384), augment=Augment.none())
    masked = [i for i, e in enumerate(ds.entries)
              if any(a.get("iscrowd") or not any(v > 0 for v in (a.get("keypoints") or [])[2::3])
                     for a in ds._anns.get(e["id"], []))]
    assert masked, "coco_mini has crowd regions and persons without keypoints"
    fractions = [float((ds[i]["mask"] < 0.5).mean()) for i in masked[:5]]
    assert max(fractions) > 0.005 and min(fractions) < 0.9
    clean = next(i for i in range(len(ds)) if i not in masked)
    assert ds[clean]["mask"].min() == 1.0


def test_training_lowers_the_loss_and_resume_is_exact(tmp_path):
    torch.set_num_threads(2)
    cfg = _config(tmp_path / "a", epochs=12, max_steps=12, augment={**Augment.none().__dict__})
    trainer = Trainer(cfg, torch.device("cpu"), progress=False)
    trainer.data = _dataset(augment=Augment.none())  # two images: a few steps must fit them better
    losses = []
    while trainer.step < 12:
        losses += trainer.train_epoch()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    ckpt = trainer.save()
    net, state = load_checkpoint(ckpt)
    assert state["step"] == 12 and state["epoch"] == trainer.epoch

    # Two epochs in one go == one epoch, save, resume, one more epoch.
    kw = dict(epochs=2, augment={"scale": (0.8, 1.2), "rotate": 10.0, "shift": 0.1, "flip": 0.5,
                                 "person_centre": 0.8})
    straight = Trainer(_config(tmp_path / "b", **kw), torch.device("cpu"), progress=False)
    straight.data = _dataset(augment=Augment(**kw["augment"]))
    straight.train_epoch()
    straight.train_epoch()
    first = Trainer(_config(tmp_path / "c", **kw), torch.device("cpu"), progress=False)
    first.data = _dataset(augment=Augment(**kw["augment"]))
    first.train_epoch()
    resumed = Trainer(_config(tmp_path / "c", **kw), torch.device("cpu"), resume=first.save(), progress=False)
    resumed.data = _dataset(augment=Augment(**kw["augment"]))
    assert (resumed.epoch, resumed.step) == (1, first.step)
    resumed.train_epoch()
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_export_has_the_deployable_interface(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgepose import EdgePose

    trainer = Trainer(_config(tmp_path), torch.device("cpu"), progress=False)
    path = export_onnx(trainer.net, tmp_path / "m.onnx")
    model = onnx.load(str(path))

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in model.graph.input] == [(INPUT_NAME, ["batch", 288, 384, 3])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        (HEATMAP_NAME, ["batch", 36, 48, 19]), (PAF_NAME, ["batch", 144, 192, 38])]
    assert INPUT_NAME == "input_1:0" and HEATMAP_NAME == "heatmap_out/BiasAdd:0"
    assert PAF_NAME == "conv2d_transpose_1/BiasAdd:0"

    # The ONNX model computes what the network does; the PAF is its 4x nearest-neighbour upsampling.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 288, 384, 3)).astype(np.float32)
    heat, paf = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
    with torch.no_grad():
        ref_heat, ref_paf = trainer.net.eval()(torch.from_numpy(x).permute(0, 3, 1, 2))[-1]
    np.testing.assert_allclose(heat, ref_heat.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    up = ref_paf.permute(0, 2, 3, 1).numpy().repeat(4, axis=1).repeat(4, axis=2)
    np.testing.assert_allclose(paf, up, atol=1e-4)

    # edgepose reads it as it reads NVIDIA's model: the BodyPoseNet preset by tensor names.
    with EdgePose(str(path), backend="onnxruntime") as pose:
        spec = pose.spec
        got = (spec.color, spec.scale, spec.offset, spec.heatmap_stride, spec.paf_stride)
        assert got == ("RGB", 1 / 256, -0.5, 8, 2)
        assert spec.input_size == (288, 384)
        pose.infer(np.zeros((480, 640, 3), np.uint8))


def test_etlt_packing_round_trips(tmp_path):
    pytest.importorskip("cryptography", reason=".etlt needs cryptography")
    from edgepose import EdgePose
    from edgepose.formats import etlt
    from tools.train.export import pack_etlt

    trainer = Trainer(_config(tmp_path), torch.device("cpu"), progress=False)
    onnx_path = export_onnx(trainer.net, tmp_path / "m.onnx")
    packed = pack_etlt(onnx_path, tmp_path / "m.etlt", "nvidia_tlt")
    plain = etlt.read_etlt(packed, "nvidia_tlt")
    payload = plain.onnx_bytes()
    assert payload == onnx_path.read_bytes()
    with EdgePose(bytes(payload), backend="onnxruntime") as pose:
        assert pose.spec.input_name == INPUT_NAME


def test_limit_takes_the_first_images_of_the_file():
    import json

    first = [e["id"] for e in json.loads(ANNOTATIONS.read_text())["images"][:16]]
    ds = CocoPoses(ANNOTATIONS, IMAGES, input_size=(96, 128), limit=16)
    assert [e["id"] for e in ds.entries] == first
    people = CocoPoses(ANNOTATIONS, IMAGES, input_size=(96, 128), limit=16, people_only=True)
    assert 0 < len(people) < 16 and {e["id"] for e in people.entries} <= set(first)


def test_bad_inputs_are_reported(tmp_path):
    with pytest.raises(InputError, match="input_size"):
        CocoPoses(ANNOTATIONS, IMAGES, input_size=(100, 128))
    with pytest.raises(InputError, match="folder not found"):
        CocoPoses(ANNOTATIONS, tmp_path / "nope")
    with pytest.raises(InputError, match="limit"):
        CocoPoses(ANNOTATIONS, IMAGES, limit=0)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="multiples of 8"):
        export_onnx(tmp_path / "junk.pt", tmp_path / "m.onnx", input_size=(287, 384))
