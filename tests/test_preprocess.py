"""The one preprocessing definition (engine.preprocess) and the one metadata type (engine.model_meta)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine import transforms
from engine.model_meta import (
    CHECKPOINT,
    FORMATS,
    ONNX,
    ModelMeta,
    ModelMetaError,
    encode_strings,
    read_safetensors_meta,
)
from engine.preprocess import Preprocess, Storage, image_input, image_pixels, input_array, store

REPO = Path(__file__).resolve().parents[1]
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def torch_ref(x: np.ndarray, size: int) -> np.ndarray:
    return transforms.preprocess(torch.from_numpy(x)[None], size, IMAGENET["mean"], IMAGENET["std"])[0].numpy()


# --- the numpy/Pillow twin reproduces the torch side -------------------------------


@pytest.mark.parametrize("chans, h, w, size", [
    (1, 28, 28, 32),  # grey, upscaled (footwear at 32 px)
    (1, 28, 28, 96),
    (1, 28, 28, 16),  # grey, shrunk: antialiased
    (1, 20, 44, 32),  # grey, non-square, one side shrinks
    (3, 32, 32, 64),
    (3, 100, 100, 64),
    (3, 80, 96, 48),  # both shrink, non-square
    (3, 60, 100, 64),  # only the width shrinks
    (3, 100, 60, 64),  # only the height shrinks (the landed engine didn't antialias this one)
    (3, 20, 30, 64),  # both grow, non-square
    (3, 32, 32, 32),  # no resize
])
def test_numpy_twin_matches_torch(chans, h, w, size):
    x = np.random.default_rng(h * w + size).integers(0, 256, (chans, h, w), dtype=np.uint8)
    spec = Preprocess(size, **IMAGENET, grey=chans == 1)
    got = input_array(x, spec)
    assert got.shape == (3, size, size) and got.dtype == np.float32
    assert np.abs(got - torch_ref(x, size)).max() < 1e-5


@pytest.mark.parametrize("h, w", [(100, 60), (60, 100), (100, 100), (80, 96)])
def test_antialias_whenever_a_side_shrinks(h, w):
    """Per axis as torch does: the reference is antialias=True, and it isn't plain bilinear."""
    x = np.random.default_rng(0).integers(0, 256, (3, h, w), dtype=np.uint8)
    xt = torch.from_numpy(x)[None].float() / 255
    aa = F.interpolate(xt, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    plain = F.interpolate(xt, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    ref = torch_ref(x, 64) * np.array(IMAGENET["std"]).reshape(3, 1, 1) + np.array(IMAGENET["mean"]).reshape(3, 1, 1)
    assert np.abs(ref - aa[0].numpy()).max() < 1e-5
    assert np.abs(ref - plain[0].numpy()).max() > 0.1  # noise: antialiasing changes it a lot


def test_upscaling_stays_plain_bilinear():
    x = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
    got = transforms.preprocess(x, 64, (0.0,) * 3, (1.0,) * 3)
    plain = F.interpolate(x.float() / 255, size=(64, 64), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(got, plain)


def test_prepare_batch_is_preprocess_with_augmentation_between_resize_and_normalise(monkeypatch):
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    ref = transforms.preprocess(x, 32, IMAGENET["mean"], IMAGENET["std"])
    assert torch.equal(transforms.prepare_batch(x, 32, IMAGENET["mean"], IMAGENET["std"]), ref)
    seen = []

    def spy(batch, generator):
        seen.append(batch.clone())
        return batch.flip(-1)

    monkeypatch.setattr(transforms, "augment", spy)
    got = transforms.prepare_batch(x, 32, IMAGENET["mean"], IMAGENET["std"], torch.Generator().manual_seed(0))
    # the hook saw the resized RGB batch in [0, 1], and its output was normalised
    unnorm = ref * torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1) + torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    assert seen[0].shape == (4, 3, 32, 32) and 0 <= seen[0].min() and seen[0].max() <= 1
    assert torch.allclose(seen[0], unnorm, atol=1e-6)
    assert torch.allclose(got, ref.flip(-1), atol=1e-6)


def test_grey_model_reads_colour_files_as_grey():
    spec = Preprocess(16, (0.5,) * 3, (0.25,) * 3, grey=True)
    grey = np.random.default_rng(0).integers(0, 256, (20, 20), dtype=np.uint8)
    rgb = Image.fromarray(np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(image_input(rgb, spec), image_input(Image.fromarray(grey), spec))
    assert image_pixels(rgb, spec).shape == (1, 20, 20)


def test_spec_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="3 values"):
        Preprocess(32, (0.5, 0.5), (0.2,) * 3)
    with pytest.raises(ValueError, match="interpolation 'nearest'"):
        Preprocess(32, (0.5,) * 3, (0.2,) * 3, interpolation="nearest")
    with pytest.raises(ValueError, match="storage fit 'stretch'"):
        Storage(32, fit="stretch")


# --- the storage step --------------------------------------------------------------


def _wide_image() -> np.ndarray:
    """40 x 80: red left quarter, green middle half, blue right quarter."""
    a = np.zeros((40, 80, 3), dtype=np.uint8)
    a[:, :20, 0] = 255
    a[:, 20:60, 1] = 255
    a[:, 60:, 2] = 255
    return a


def test_storage_centre_crops_the_long_side():
    stored = store(Image.fromarray(_wide_image()), Storage(20))
    assert stored.shape == (3, 20, 20)
    # the crop keeps the middle 40 columns: green (bicubic reaches past the crop at the edge)
    inner = stored[:, :, 1:-1]
    assert inner[1].min() >= 250 and inner[0].max() <= 5 and inner[2].max() <= 5


def test_storage_applies_exif_orientation(tmp_path):
    """Orientation 6 = the pixels are stored rotated; store() shows them upright, then crops."""
    upright = _wide_image()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)  # lossless
    with Image.open(path) as im:
        assert im.size == (40, 80)  # stored portrait
        got = store(im, Storage(20))
    np.testing.assert_array_equal(got, store(Image.fromarray(upright), Storage(20)))
    with Image.open(path) as im:
        no_exif = store(im, Storage(20, exif=False))
    assert not np.array_equal(no_exif, got)


def test_storage_spec_drives_predict_inputs():
    """A folder-trained model's input for a file is the stored image, then step 2."""
    spec = Preprocess(32, **IMAGENET, storage=Storage(20))
    image = Image.fromarray(_wide_image())
    np.testing.assert_array_equal(image_input(image, spec), input_array(store(image, Storage(20)), spec))
    stretched = input_array(np.asarray(image).transpose(2, 0, 1), spec)
    assert np.abs(image_input(image, spec) - stretched).max() > 1  # not the same as stretching the file


def test_folder_datasets_record_their_storage(tmp_path):
    from engine.data import load_dataset

    tree = tmp_path / "tree"
    for label, name in enumerate(("a", "b")):
        (tree / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (30 + i, 20), (label * 200, 50, 0)).save(tree / name / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tree}", image_size=16, val_fraction=0.25)
    assert ds.storage == Storage(16)
    assert ds.storage.to_dict() == {"size": 16, "fit": "center-crop", "resample": "bicubic", "exif": True,
                                    "mode": "RGB"}
    assert load_dataset("digits").storage is None


# --- one metadata type -----------------------------------------------------------


def meta(**kw) -> ModelMeta:
    fields = dict(backbone="test_efficientnet", head="seed", classes=("a", "b", "c"), image_size=32, **IMAGENET,
                  in_chans_source=3, storage=Storage(32), run_id="r1", dataset="imagefolder:/x", epoch=2,
                  val_loss=0.5)
    return ModelMeta(**{**fields, **kw})


@pytest.mark.parametrize("kind", [CHECKPOINT, ONNX])
def test_round_trip_through_strings(kind):
    m = meta().with_extra(opset=17, source_run="/runs/g/r1")
    props = m.to_strings(kind)
    assert all(isinstance(v, str) for v in props.values())
    assert props["format"] == FORMATS[kind]
    assert json.loads(props["storage"]) == Storage(32).to_dict()
    back = ModelMeta.from_strings(props, "f.bin", kind)
    assert back == m and back.num_classes == 3 and back.extra == {"opset": 17, "source_run": "/runs/g/r1"}
    assert back.preprocess == Preprocess(32, **IMAGENET, storage=Storage(32))
    assert ModelMeta.from_strings(meta(storage=None).to_strings(kind), "f", kind).storage is None


def test_fields_given_in_code():
    """A mapping without ``format`` (tests, scripts): validated the same way, storage kept when given."""
    fields = meta().to_dict()
    fields.pop("format")
    assert ModelMeta.coerce(fields) == meta() and hash(ModelMeta.coerce(fields)) == hash(meta())
    del fields["storage"], fields["antialias"]
    assert ModelMeta.coerce(fields) == meta(storage=None)
    with pytest.raises(ModelMetaError, match="model metadata: metadata lacks epoch"):
        ModelMeta.coerce({k: v for k, v in fields.items() if k != "epoch"})


def landed_strings(fmt: str) -> dict[str, str]:
    """Metadata exactly as the landed (format /1) code wrote it: no antialias, no storage."""
    values = {"backbone": "test_efficientnet", "head": "seed", "num_classes": 2, "classes": ["x", "y"],
              "image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear",
              "channels": "RGB", "in_chans_source": 1, "run_id": "old", "dataset": "footwear", "epoch": 4,
              "val_loss": 0.125}
    return {"format": fmt, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}}


@pytest.mark.parametrize("kind, fmt", [(CHECKPOINT, "finetune-tui/1"), (ONNX, "finetune-tui-onnx/1")])
def test_files_written_by_the_landed_code_still_load(kind, fmt):
    m = ModelMeta.from_strings(landed_strings(fmt), "old.file", kind)
    assert m.storage is None and m.antialias == "shrink" and m.preprocess.grey
    assert (m.classes, m.epoch, m.val_loss) == (("x", "y"), 4, 0.125)


@pytest.mark.parametrize("change, message", [
    ({"format": "finetune-tui-onnx/2"},
     "f.st is not a finetune-tui checkpoint (metadata format 'finetune-tui-onnx/2')"),
    ({"format": None}, "is not a finetune-tui checkpoint (metadata format None)"),
    ({"classes": None}, "f.st: metadata lacks classes"),
    ({"storage": None}, "f.st: metadata lacks storage"),  # /2 must say whether there is a storage step
    ({"mean": "[0.5, 0.5]"}, "f.st: mean/std must have 3 values"),
    ({"num_classes": "4"}, "f.st: metadata num_classes 4 != 3 classes"),
    ({"image_size": '"32"'}, "f.st: metadata image_size must be an integer"),
    ({"storage": '{"size": 32, "fit": "stretch"}'}, "f.st: storage fit 'stretch' is not supported"),
    ({"interpolation": "nearest"}, "f.st: interpolation 'nearest' is not supported"),
])
def test_bad_metadata_is_one_clear_error_naming_the_file(change, message):
    props = meta().to_strings(CHECKPOINT)
    for k, v in change.items():
        if v is None:
            props.pop(k)
        else:
            props[k] = v
    with pytest.raises(ModelMetaError) as exc:
        ModelMeta.from_strings(props, "f.st", CHECKPOINT)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def _write_safetensors(path: Path, metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path), metadata=metadata)


def test_read_safetensors_meta_from_the_header(tmp_path):
    from engine.checkpoint import load_classifier, read_metadata, save_checkpoint
    from engine.models import build_classifier

    model = build_classifier("test_efficientnet", "linear", 3)
    path = tmp_path / "best.safetensors"
    save_checkpoint(model, path, meta(head="linear"))
    assert read_safetensors_meta(path) == meta(head="linear")
    assert read_metadata(path) == meta(head="linear").to_dict(CHECKPOINT)
    assert load_classifier(path)[1]["storage"] == Storage(32).to_dict()
    old = tmp_path / "old.safetensors"
    _write_safetensors(old, landed_strings("finetune-tui/1"))
    assert read_safetensors_meta(old).run_id == "old"
    assert read_metadata(old)["storage"] is None


def test_unreadable_safetensors_name_the_file(tmp_path):
    cases = {"missing.safetensors": None, "short.safetensors": b"\x01\x02",
             "huge.safetensors": struct.pack("<Q", 10**12) + b"{}",
             "cut.safetensors": struct.pack("<Q", 100) + b'{"__metadata__": {',
             "notjson.safetensors": struct.pack("<Q", 4) + b"\xff\xfe{}"}
    for name, blob in cases.items():
        path = tmp_path / name
        if blob is not None:
            path.write_bytes(blob)
        with pytest.raises(ModelMetaError, match=f"checkpoint {path}"):
            read_safetensors_meta(path)
    plain = tmp_path / "plain.safetensors"
    _write_safetensors(plain, {})
    with pytest.raises(ModelMetaError, match="is not a finetune-tui checkpoint"):
        read_safetensors_meta(plain)


def test_metadata_and_preprocessing_import_without_torch(tmp_path):
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, meta().to_strings(CHECKPOINT))
    code = (
        "import sys\n"
        "for name in ('torch', 'timm', 'torchvision', 'safetensors.torch'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np\n"
        "from engine.model_meta import read_safetensors_meta\n"
        "from engine.preprocess import input_array\n"
        "m = read_safetensors_meta(sys.argv[1])\n"
        "x = input_array(np.zeros((3, 20, 40), np.uint8), m.preprocess)\n"
        "print(m.run_id, m.storage.size, x.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["r1", "32", "(3,", "32,", "32)"]


def test_encode_strings_keeps_strings_and_jsons_the_rest():
    assert encode_strings({"a": "x", "b": [1, 2], "c": None}) == {"a": "x", "b": "[1, 2]", "c": "null"}
