"""The diploma-spec derivative meets every PhotoSpec figure, measured on the derivative itself."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
from PIL import Image

from appliance.qc import (
    DerivativeError,
    FaceGeometry,
    PhotoSpec,
    QcConfig,
    QcReport,
    assess,
    make_derivative,
    plan_crop,
)
from appliance.qc import checks as ck
from appliance.qc.detector import default_detector
from appliance.qc.samples import sample_portrait

FULL = (4056, 3040)
SPEC = PhotoSpec()


@cache
def shot(variant: str, index: int) -> tuple[bytes, QcReport]:
    buf = io.BytesIO()
    sample_portrait(*FULL, variant, index).save(buf, "JPEG", quality=92)
    jpeg = buf.getvalue()
    return jpeg, assess(jpeg, QcConfig(), SPEC)


@cache
def derivative(variant: str, index: int) -> bytes:
    jpeg, report = shot(variant, index)
    return make_derivative(jpeg, report, SPEC)


CASES = [("good", i) for i in range(4)] + [("small_face", 0), ("blue_shirt", 1)]


@pytest.mark.parametrize(("variant", "index"), CASES)
def test_derivative_meets_spec(variant: str, index: int) -> None:
    data = derivative(variant, index)
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    assert im.size == (SPEC.width_px, SPEC.height_px)
    assert im.mode == "RGB" and len(im.getbands()) * 8 == 24  # 24-bit colour
    assert tuple(round(v) for v in im.info["dpi"]) == (SPEC.dpi, SPEC.dpi)
    assert SPEC.file_size_bytes[0] <= len(data) <= SPEC.file_size_bytes[1]

    rgb = np.asarray(im.convert("RGB"))
    det = default_detector()
    faces = det.faces(rgb)
    assert len(faces) == 1
    lm = det.landmarks(rgb, faces[0])
    assert lm is not None
    eyes = lm.eye_mid[1]
    assert SPEC.eyes_from_top_px[0] <= eyes <= SPEC.eyes_from_top_px[1], eyes
    assert SPEC.face_width_px[0] <= lm.face_width <= SPEC.face_width_px[1], lm.face_width
    top = ck.head_top(ck.Scene(rgb, faces[0], lm))
    assert top is not None
    assert SPEC.head_top_from_top_px[0] <= top <= SPEC.head_top_from_top_px[1], top
    centre = (lm.right_cheek[0] + lm.left_cheek[0]) / 2
    assert abs(centre - SPEC.width_px / 2) <= SPEC.max_centre_offset_px + 4


def test_original_is_left_alone() -> None:
    jpeg, report = shot("good", 0)
    before = bytes(jpeg)
    make_derivative(jpeg, report, SPEC)
    assert jpeg == before


def test_quality_floor_is_respected() -> None:
    data = derivative("good", 1)
    # Re-encoding at quality 60 must not be larger than the max: the search starts from the spec's floor.
    im = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=SPEC.jpeg_quality_min)
    assert len(buf.getvalue()) <= len(data)


def test_file_size_range_is_configurable() -> None:
    jpeg, report = shot("good", 0)
    small = PhotoSpec(file_size_bytes=(27_000, 31_000))
    assert 27_000 <= len(make_derivative(jpeg, report, small)) <= 31_000
    with pytest.raises(DerivativeError) as e:
        make_derivative(jpeg, report, PhotoSpec(file_size_bytes=(1000, 2000)))
    assert e.value.reason == "file_too_large"
    with pytest.raises(DerivativeError) as e:
        make_derivative(jpeg, report, PhotoSpec(file_size_bytes=(900_000, 1_000_000)))
    assert e.value.reason == "file_too_small"


def test_truncated_original_is_a_derivative_error_not_oserror() -> None:
    jpeg, report = shot("good", 0)
    for data in (jpeg[: len(jpeg) // 2], b"not a jpeg", jpeg[:100]):
        with pytest.raises(DerivativeError) as e:
            make_derivative(data, report, SPEC)
        assert e.value.reason == "undecodable"


def test_derivative_reuses_qc_decode_and_cuts_at_the_cheapest_scale() -> None:
    """QC keeps its 1/2-scale decode; the derivative made from it equals one made from a fresh decode."""
    jpeg, report = shot("good", 1)
    assert report.source is not None and report.source.denom == 2
    import dataclasses

    fresh = dataclasses.replace(report, source=None)
    a = np.asarray(Image.open(io.BytesIO(make_derivative(jpeg, report, SPEC))).convert("L"), np.float32)
    b = np.asarray(Image.open(io.BytesIO(make_derivative(jpeg, fresh, SPEC))).convert("L"), np.float32)
    assert np.abs(a - b).mean() < 1.0


def test_no_face_is_a_typed_error() -> None:
    jpeg, report = shot("no_face", 0)
    assert report.check("crop").result == "fail"
    with pytest.raises(DerivativeError) as e:
        make_derivative(jpeg, report, SPEC)
    assert e.value.reason == "no_face"


def _face(cx: float = 0.5, ey: float = 0.42, fw: float = 0.2, top: float | None = 0.23) -> FaceGeometry:
    return FaceGeometry(box=(cx - fw / 2, ey - fw / 2, cx + fw / 2, ey + fw), right_eye=(cx - fw / 4, ey),
                        left_eye=(cx + fw / 4, ey), face_width=fw, centre_x=cx, chin_y=ey + fw,
                        head_top_y=top, roll_deg=0.0, yaw_deg=0.0)


def test_plan_crop_ranges() -> None:
    plan = plan_crop(_face(), FULL, SPEC)
    x0, y0, x1, y1 = plan.box
    assert 0 <= x0 < x1 <= FULL[0] and 0 <= y0 < y1 <= FULL[1]
    assert SPEC.eyes_from_top_px[0] <= plan.eyes_px <= SPEC.eyes_from_top_px[1]
    assert SPEC.head_top_from_top_px[0] <= plan.head_top_px <= SPEC.head_top_from_top_px[1]
    assert abs((x1 - x0) / (y1 - y0) - SPEC.width_px / SPEC.height_px) < 1e-9


@pytest.mark.parametrize(("face", "reason"), [
    (_face(cx=0.9), "too_near_right"),
    (_face(cx=0.08), "too_near_left"),
    (_face(ey=0.12, top=0.0), "too_near_top"),
    (_face(ey=0.85, top=0.7), "too_near_bottom"),
    (_face(fw=0.035, top=0.375), "face_too_small"),
    (_face(top=0.02), "head_proportions"),
    (_face(top=None), "head_top_not_found"),
])
def test_impossible_crops_are_typed_errors(face: FaceGeometry, reason: str) -> None:
    with pytest.raises(DerivativeError) as e:
        plan_crop(face, FULL, SPEC)
    assert e.value.reason == reason


def test_quality_search_finds_the_largest_fitting_quality() -> None:
    """The secant search answers what trying every quality would, on smooth, steep, flat and stepped curves."""
    from appliance.qc.derivative import _largest_fitting

    rng = np.random.default_rng(7)
    curves = [lambda q, b=b, k=k: int(b * np.exp(k * (q - 60)))
              for b, k in ((28_000, 0.02), (20_000, 0.06), (39_000, 0.001), (5_000, 0.09), (45_000, 0.02))]
    steps = np.cumsum(rng.integers(0, 3000, 36)) + 25_000
    curves.append(lambda q: int(steps[q - 60]))  # uneven steps, some flat
    for size in curves:
        probed: list[int] = []

        def probe(q: int, size=size, probed=probed) -> int:
            probed.append(q)
            return size(q)

        want = max((q for q in range(60, 96) if size(q) <= 40_000), default=None)
        assert _largest_fitting(probe, 60, 95, 40_000) == want
        assert len(probed) <= 9, probed


def test_derivative_is_close_to_a_lanczos_cut_of_the_full_frame() -> None:
    """The cheap 1/2-scale cut (Gaussian pre-filter, bilinear warp) is neither shifted nor aliased: it is
    within 38 dB PSNR of a Lanczos resample of the full-resolution decode over the same box."""
    from appliance.qc.decode import decode
    from appliance.qc.derivative import _cut

    jpeg, report = shot("good", 1)
    plan = plan_crop(report.face, FULL, SPEC)
    ideal = Image.fromarray(decode(jpeg, 1).rgb).resize((SPEC.width_px, SPEC.height_px), Image.Resampling.LANCZOS,
                                                       box=plan.box)
    cut = _cut(decode(jpeg, 2), plan.box, SPEC).astype(np.float64)
    mse = float(((cut - np.asarray(ideal, np.float64)) ** 2).mean())
    assert 10 * np.log10(255**2 / mse) >= 38
