"""Radiograph reading of the folder predictor (:func:`pipelines.predictors.folder.load_input_image`): DICOM VOI windows,
rescale slope / intercept, MONOCHROME1 shown bright = dense, RGBA / 16-bit PNGs as one channel in [0, 255].

Test DICOMs are written with SimpleITK. Its writer always stores MONOCHROME2 and the full 16 bits, so MONOCHROME1 and
12-bit files are made by patching those attributes in the written bytes (same-length values)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from pipelines.predictors.folder import load_input_image

# modality values of a 2 x 3 frame (rows x columns: the layout tells a transpose apart)
VALUES = np.array([[0, 500, 1000], [2000, 3000, 4000]], np.uint16)
# LINEAR, centre 1000.5, width 2001: 0 below x <= 0, 255 above x > 2000, ((x - 1000) / 2000 + 0.5) * 255 = x * 0.1275
LINEAR = np.array([[0.0, 63.75, 127.5], [255.0, 255.0, 255.0]])
WINDOW = {"0028|1050": "1000.5", "0028|1051": "2001"}


def _patch_us(data: bytes, element: int, value: int) -> bytes:
    """Set the US attribute (0028, element) of a little-endian DICOM (implicit or explicit VR)."""
    implicit = struct.pack("<HHI", 0x28, element, 2)
    for key in (implicit, struct.pack("<HH", 0x28, element) + b"US" + struct.pack("<H", 2)):
        if data.count(key) == 1:
            i = data.index(key) + len(key)
            return data[:i] + struct.pack("<H", value) + data[i + 2:]
    raise AssertionError(f"attribute (0028,{element:04x}) not found once")


def _write_dicom(path, array: np.ndarray, tags: dict | None = None, monochrome1: bool = False,
                 bits_stored: int | None = None) -> str:
    image = sitk.GetImageFromArray(array)
    for key, value in (tags or {}).items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path))
    with open(path, "rb") as f:
        data = f.read()
    if monochrome1:
        assert data.count(b"MONOCHROME2") == 1
        data = data.replace(b"MONOCHROME2", b"MONOCHROME1")
    if bits_stored is not None:
        data = _patch_us(_patch_us(data, 0x101, bits_stored), 0x102, bits_stored - 1)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _load(path) -> np.ndarray:
    img = load_input_image(str(path))
    assert img.dtype == np.float32 and img.ndim == 3 and img.shape[0] == 1
    return img[0].astype(np.float64)


def _stored(path, count: int, dtype) -> np.ndarray:
    """The last ``count`` pixel values as stored in the file (the pixel data element comes last)."""
    with open(path, "rb") as f:
        return np.frombuffer(f.read()[-count * np.dtype(dtype).itemsize:], dtype)


# ------------------------------------------------------------------------------------------------ VOI windows
def _sigmoid(x, c, w):
    return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))


WINDOW_CASES = [  # (id, tags, expected display values of VALUES)
    ("linear", WINDOW, LINEAR),
    ("linear_multi_valued", {"0028|1050": "1000.5\\300", "0028|1051": "2001\\100"}, LINEAR),  # the first window
    ("linear_exact", {"0028|1050": "1000", "0028|1051": "2000", "0028|1056": "LINEAR_EXACT"}, LINEAR),
    ("sigmoid", {"0028|1050": "1000", "0028|1051": "2000", "0028|1056": "SIGMOID"},
     np.array([[255 / (1 + np.e ** 2), 255 / (1 + np.e), 127.5],
               [255 / (1 + np.e ** -2), 255 / (1 + np.e ** -4), 255 / (1 + np.e ** -6)]])),
    ("no_window_min_max", {}, VALUES * (255.0 / 4000.0)),
    ("zero_width_min_max", {"0028|1050": "1000", "0028|1051": "0"}, VALUES * (255.0 / 4000.0)),
]


@pytest.mark.parametrize("tags,expected", [c[1:] for c in WINDOW_CASES], ids=[c[0] for c in WINDOW_CASES])
def test_voi_window_of_16_bit_dicom(tmp_path, tags, expected):
    np.testing.assert_allclose(_load(_write_dicom(tmp_path / "cr.dcm", VALUES, tags)), expected, atol=1e-3)


def test_sigmoid_matches_the_formula(tmp_path):
    path = _write_dicom(tmp_path / "cr.dcm", VALUES, {"0028|1050": "1000", "0028|1051": "2000", "0028|1056": "SIGMOID"})
    np.testing.assert_allclose(_load(path), _sigmoid(VALUES.astype(float), 1000, 2000), atol=1e-3)


def test_rescale_slope_intercept_applied_before_the_window(tmp_path):
    hounsfield = np.array([[-1000, 0, 1000], [2000, 3000, 4000]], np.int16)  # modality values
    path = _write_dicom(tmp_path / "ct.dcm", hounsfield, {**WINDOW, "0028|1052": "-1000", "0028|1053": "2"})
    # stored (v + 1000) / 2: the reader must apply slope and intercept to get the modality values back
    np.testing.assert_array_equal(_stored(path, 6, np.int16), [0, 500, 1000, 1500, 2000, 2500])
    np.testing.assert_allclose(_load(path), [[0.0, 0.0, 127.5], [255.0, 255.0, 255.0]], atol=1e-3)


# ------------------------------------------------------------------------------------------------ MONOCHROME1
MONOCHROME1_CASES = [  # (id, array (stored = modality unless rescaled), tags, bits stored, expected)
    ("window", VALUES, WINDOW, None, 255.0 - LINEAR),
    ("no_window", VALUES, {}, None, 255.0 - VALUES * (255.0 / 4000.0)),
    ("12_bit_window", VALUES, WINDOW, 12, 255.0 - LINEAR),
    ("12_bit_no_window", VALUES, {}, 12, 255.0 - VALUES * (255.0 / 4000.0)),
    ("signed_rescaled_window", np.array([[-1000, 0, 1000], [2000, 3000, 4000]], np.int16),
     {**WINDOW, "0028|1052": "-1000", "0028|1053": "2"}, None, 255.0 - np.array([[0, 0, 127.5], [255, 255, 255]])),
    ("8_bit", np.array([[0, 50, 100], [150, 200, 250]], np.uint8), {}, None,
     255.0 - np.array([[0, 51, 102], [153, 204, 255]], float)),
]


@pytest.mark.parametrize("array,tags,bits,expected", [c[1:] for c in MONOCHROME1_CASES],
                         ids=[c[0] for c in MONOCHROME1_CASES])
def test_monochrome1_is_inverted_after_the_window(tmp_path, array, tags, bits, expected):
    path = _write_dicom(tmp_path / "cr.dcm", array, tags, monochrome1=True, bits_stored=bits)
    np.testing.assert_allclose(_load(path), expected, atol=1e-3)


def test_monochrome1_radiograph_bright_is_dense(tmp_path):
    # a MONOCHROME1 radiograph stores dense bone as LOW values (shown white): after loading it must be bright
    stored = np.full((8, 10), 3000, np.uint16)
    stored[2:6, 3:7] = 200  # bone
    for monochrome1, bone_brighter in ((True, True), (False, False)):
        img = _load(_write_dicom(tmp_path / f"x{monochrome1}.dcm", stored, monochrome1=monochrome1))
        assert (img[2:6, 3:7].mean() > img[0].mean()) == bone_brighter
        assert {img.min(), img.max()} == {0.0, 255.0}


def test_constant_frame_is_zero_for_both_photometrics(tmp_path):
    for monochrome1 in (False, True):
        flat = _write_dicom(tmp_path / f"flat{monochrome1}.dcm", np.full((4, 5), 700, np.uint16), WINDOW, monochrome1)
        assert not _load(flat).any()


# ------------------------------------------------------------------------------------------------ PNG
def test_rgba_png_is_luminance_without_alpha(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = [[10, 20, 30], [40, 50, 60]]
    rgba[..., 1] = [[100, 110, 120], [130, 140, 150]]
    rgba[..., 2] = [[200, 210, 220], [230, 240, 250]]
    rgba[..., 3] = [[255, 0, 128], [1, 2, 3]]  # alpha: ignored
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "x.png")
    expected = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]  # [0][0]: 2.99 + 58.7 + 22.8
    assert expected[0, 0] == pytest.approx(84.49)
    np.testing.assert_allclose(_load(tmp_path / "x.png"), expected, atol=1e-3)


def test_gray_rgba_png_equals_its_gray_channel(tmp_path):
    # the RGBA PNGs among NIH ChestX-ray14 are gray images with an opaque alpha channel
    gray = np.array([[0, 64, 128], [192, 255, 7]], np.uint8)
    rgba = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "nih.png")
    Image.fromarray(gray, mode="L").save(tmp_path / "nih_l.png")
    np.testing.assert_allclose(_load(tmp_path / "nih.png"), gray, atol=1e-3)
    np.testing.assert_array_equal(_load(tmp_path / "nih_l.png"), gray)  # 8-bit grayscale as is (BUSI)


def test_16_bit_png_scaled_to_255(tmp_path):
    values = np.array([[0, 257, 13107], [32768, 65278, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "x16.png")
    with Image.open(tmp_path / "x16.png") as im:
        assert im.mode.startswith("I")  # really stored as 16-bit grayscale
    np.testing.assert_allclose(_load(tmp_path / "x16.png"), [[0, 1, 51], [32768 * 255 / 65535, 254, 255]], atol=1e-3)
