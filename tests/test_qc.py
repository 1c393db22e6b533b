"""QC against the labelled evaluation set of 16 people (tests/data/eval), plus the report, config, decode and
daemon-contract behaviour.

Run ``python tests/test_qc.py`` to print the per-check precision/recall and the headline rates, for the
people used to tune the thresholds and for the held-out people separately.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys
import time
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from appliance.devices.camera import Photo
from appliance.qc import (
    CHECK_NAMES,
    ImageDecodeError,
    PhotoSpec,
    QcConfig,
    QcReport,
    assess,
    assess_array,
    lores_to_rgb,
)
from appliance.qc.detector import FaceBox, FaceLandmarks
from appliance.qc.samples import VARIANTS, sample_portrait
from appliance.quality import QualityCheck

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "eval"))
import evalset

FULL_SIZE = evalset.FULL_SIZE
ALL_CHECKS = (*CHECK_NAMES, "crop")
SPLITS = ("tuned", "held_out")


@cache
def evaluation() -> list[tuple[evalset.Frame, QcReport]]:
    """Every evaluation frame with its report (the Pi path: small RGB frame + full frame size)."""
    return [(f, assess_array(f.rgb, None, QcConfig(), PhotoSpec(), full_size=FULL_SIZE)) for f in evalset.frames()]


def confusion(split: str) -> dict[str, tuple[int, int, int]]:
    """check -> (TP, FP, FN) over the scored frames of one split; 'may fail' cells and 'either' frames are
    not counted."""
    table = {name: [0, 0, 0] for name in ALL_CHECKS}
    for f, report in evaluation():
        if f.split != split or f.label == "either":
            continue
        failed = set(report.failed)
        for name in ALL_CHECKS:
            if name in f.may and name not in f.must:
                continue
            if name in f.must:
                table[name][0 if name in failed else 2] += 1
            elif name in failed:
                table[name][1] += 1
    return {k: (v[0], v[1], v[2]) for k, v in table.items()}


def headline(split: str) -> dict[str, tuple[int, int]]:
    """(count, total): good photos falsely rejected, bad photos falsely passed (verdict != fail)."""
    scored = [(f, r) for f, r in evaluation() if f.split == split]
    good = [r for f, r in scored if f.label == "pass"]
    bad = [r for f, r in scored if f.label == "retake"]
    return {"false_reject": (sum(r.verdict == "fail" for r in good), len(good)),
            "false_pass": (sum(r.verdict != "fail" for r in bad), len(bad))}


def format_tables() -> str:
    lines = []
    for split in SPLITS:
        people = sorted({f.person for f, _ in evaluation() if f.split == split})
        lines.append(f"\n== {split} people ({len(people)}): {', '.join(people)}")
        lines.append(f"{'check':24} {'TP':>3} {'FP':>3} {'FN':>3} {'precision':>9} {'recall':>6}")
        for name, (tp, fp, fn) in confusion(split).items():
            p = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
            r = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
            lines.append(f"{name:24} {tp:3} {fp:3} {fn:3} {p:>9} {r:>6}")
        h = headline(split)
        for key, text in (("false_reject", "good photos falsely rejected"),
                          ("false_pass", "bad photos falsely passed")):
            n, total = h[key]
            lines.append(f"{text:32} {n:3} / {total:3} = {100 * n / max(total, 1):5.1f} %")
    counts = {lab: sum(f.label == lab for f, _ in evaluation()) for lab in ("pass", "retake", "either")}
    lines.append(f"\n{len(evaluation())} frames: {counts}")
    return "\n".join(lines)


# --- the evaluation set ----------------------------------------------------------------------------
def test_evaluation_set_has_many_people_and_a_held_out_third() -> None:
    frames = evalset.frames()
    people = {f.person for f in frames} - {"nobody"}
    held = {f.person for f in frames if f.split == "held_out"} - {"nobody"}
    assert len(people) >= 15 and len(held) * 3 >= len(people)
    assert {f.label for f in frames} == {"pass", "retake", "either"}
    for f in frames:
        assert f.must | f.may <= set(ALL_CHECKS), f.name
        assert f.rgb.shape == (evalset.SIZE[1], evalset.SIZE[0], 3)
    size = sum(p.stat().st_size for p in (Path(evalset.__file__).parent / "people").iterdir())
    assert size < 3_000_000


@pytest.mark.parametrize("split", SPLITS)
def test_headline_rates(split: str) -> None:
    """Goals: good photos falsely rejected <= 2 %, bad photos falsely passed <= 5 % (asserted with the
    margins measured; docs/qc.md has the figures)."""
    print(format_tables())
    h = headline(split)
    n, total = h["false_reject"]
    assert total >= 8 and n / total <= 0.02 + 1e-9, h
    n, total = h["false_pass"]
    assert total >= 40 and n / total <= 0.05, h  # the goal, on both splits (measured 1.5 % and 2.1 %)


@pytest.mark.parametrize("split", SPLITS)
def test_checks_that_generalise(split: str) -> None:
    """The checks rewritten for other people (clothing, background, exposure, mouth) keep their precision
    and recall on both splits."""
    table = confusion(split)
    for name in ("face_count", "clothing", "background_uniformity", "exposure", "mouth_closed", "sharpness",
                 "face_centre", "face_size", "roll", "eyes_visible"):
        tp, fp, fn = table[name]
        assert tp > 0, (name, table[name])
        assert tp / (tp + fp) >= 0.9 and tp / (tp + fn) >= 0.75, (name, table[name])


def test_no_good_photo_fails_illumination() -> None:
    """Ordinary portrait light on good photos is not a half-lit face."""
    bad = [f.name for f, r in evaluation() if f.label == "pass" and r.check("illumination").result == "fail"]
    assert not bad


def test_light_blue_top_fails_and_white_top_passes_clothing() -> None:
    by = {f.name: r for f, r in evaluation()}
    blue = [n for n in by if n.endswith("__light_blue_top")]
    white = [n for n in by if n.endswith("__good_white_top")]
    assert len(blue) >= 5
    caught = [n for n in blue if by[n].check("clothing").result == "fail"]
    assert len(caught) >= 0.8 * len(blue), [(n, by[n].check("clothing").value) for n in blue]
    assert all(by[n].check("clothing").result != "fail" for n in white)


def test_clearly_dark_face_fails_exposure() -> None:
    dark = [r for f, r in evaluation() if f.variant == "dark"]
    assert dark and all(r.check("exposure").reason_code == "face_underexposed" for r in dark)


# --- report and interface --------------------------------------------------------------------------
def test_report_shape_and_json() -> None:
    _, report = evaluation()[0]
    d = json.loads(json.dumps(report.to_dict()))
    assert d["verdict"] in ("pass", "warn", "fail") and "source" not in d
    assert [c["name"] for c in d["checks"]] == list(ALL_CHECKS)
    for c in d["checks"]:
        assert set(c) == {"name", "result", "value", "threshold", "reason_code"}
        assert c["result"] in ("pass", "warn", "fail")
    assert d["elapsed_ms"] > 0 and d["frame_size"] == list(FULL_SIZE)


def test_good_frame_passes_with_geometry() -> None:
    for f, rep in evaluation():
        if f.label == "pass" and f.variant == "good":
            assert not rep.failed
            g = rep.face
            assert g is not None and g.head_top_y is not None
            assert 0.15 < g.face_width < 0.25 and abs(g.centre_x - 0.5) < 0.05
            assert g.head_top_y < g.eye_mid[1] < g.chin_y


def test_no_face_report_has_every_check() -> None:
    rep = next(rep for f, rep in evaluation() if f.person == "nobody")
    assert rep.verdict == "fail" and rep.face is None
    assert rep.check("face_count").reason_code == "no_face"
    assert all(c.result == "warn" and c.value is None for c in rep.checks[1:-1])


class _NoFaces:
    def faces(self, rgb: np.ndarray) -> list[FaceBox]:
        return []

    def landmarks(self, rgb: np.ndarray, face: FaceBox) -> FaceLandmarks | None:
        return None


def test_detector_is_swappable() -> None:
    rgb = np.asarray(sample_portrait(640, 480))
    rep = assess_array(rgb, None, QcConfig(), detector=_NoFaces())
    assert rep.verdict == "fail" and rep.check("face_count").reason_code == "no_face"


def test_config_is_flat_plain_and_frozen() -> None:
    for cls in (QcConfig, PhotoSpec):
        obj = cls()
        for f in dataclasses.fields(cls):
            v = getattr(obj, f.name)
            ok = isinstance(v, int | float | str | bool) or (
                isinstance(v, tuple) and all(isinstance(x, int | float) for x in v))
            assert ok, (cls.__name__, f.name, v)
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.__setattr__(dataclasses.fields(cls)[0].name, 1)


def test_thresholds_come_from_config() -> None:
    f = next(f for f, _ in evaluation() if f.label == "pass")
    strict = QcConfig(sharpness_warn=50.0, sharpness_fail=40.0)
    rep = assess_array(f.rgb, None, strict, full_size=FULL_SIZE)
    assert rep.check("sharpness").result == "fail" and "40.0" in rep.check("sharpness").threshold


def test_clothing_is_judged_against_the_configured_backdrop() -> None:
    """A white backdrop province: a white top now merges into the backdrop, a light-blue one does not."""
    f = next(f for f, _ in evaluation() if f.name == "hopper__good_white_top")
    white = QcConfig(background_rgb=(255, 255, 255))
    assert assess_array(f.rgb, None, white, full_size=FULL_SIZE).check("clothing").result == "fail"
    blue = next(f for f, _ in evaluation() if f.name == "hopper__light_blue_top")
    assert assess_array(blue.rgb, None, white, full_size=FULL_SIZE).check("clothing").result != "fail"


# --- full-resolution paths -------------------------------------------------------------------------
@cache
def _shot(variant: str = "good", index: int = 0) -> bytes:
    buf = io.BytesIO()
    sample_portrait(4056, 3040, variant, index).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_assess_12mp_jpeg() -> None:
    rep = assess(_shot("good", 1), QcConfig(), PhotoSpec())
    assert rep.analysed_size == (1014, 760) and rep.frame_size == (4056, 3040)
    assert not rep.failed, rep.checks
    assert rep.elapsed_ms < 2000  # the real budget is measured in benchmarks/qc.py


def test_lores_path_agrees_with_jpeg_path() -> None:
    jpeg = _shot("good", 1)
    lores = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR))
    a, b = assess(jpeg, QcConfig(), PhotoSpec()), assess_array(lores, jpeg, QcConfig(), PhotoSpec())
    assert b.frame_size == (4056, 3040) and not b.failed
    assert a.face and b.face
    assert abs(a.face.eye_mid[1] - b.face.eye_mid[1]) < 0.01
    assert abs(a.face.face_width - b.face.face_width) < 0.01


def test_small_face_sharpness_uses_a_larger_decode() -> None:
    rep = assess(_shot("small_face", 1), QcConfig(), PhotoSpec())
    assert rep.check("sharpness").result == "pass"
    assert rep.check("face_size").result == "fail"


def test_lores_formats() -> None:
    rgb = np.asarray(sample_portrait(640, 480, "good", 1))
    assert np.array_equal(lores_to_rgb(rgb, "BGR888"), rgb)  # picamera2 "BGR888" is R, G, B in memory
    assert np.array_equal(lores_to_rgb(np.ascontiguousarray(rgb[..., ::-1]), "RGB888"), rgb)
    xrgb = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(lores_to_rgb(xrgb, "XRGB8888"), rgb)
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    assert yuv.shape == (720, 640)
    back = lores_to_rgb(yuv, "YUV420")
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 4
    assert not assess_array(back, None, QcConfig(), full_size=(4056, 3040)).failed
    with pytest.raises(ValueError):
        lores_to_rgb(rgb, "MJPEG")


@pytest.mark.parametrize("data", [b"not a jpeg", b"", b"\xff\xd8\xff\xe0" + bytes(50)])
def test_undecodable_shot_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        assess(data)


def test_truncated_shot_is_a_typed_error() -> None:
    with pytest.raises(ImageDecodeError, match="truncated"):
        assess(_shot()[:5000])


def test_simulator_faults_are_rejected() -> None:
    """The simulated classroom's QC faults (appliance/simulate.py) fail, its good shot passes."""
    for variant in ("good", "blurred", "eyes_occluded", "dark", "blue_shirt"):
        for index in (0, 1):
            rep = assess_array(np.asarray(sample_portrait(1014, 760, variant, index)), None, QcConfig(),
                               PhotoSpec(), full_size=(4056, 3040))
            assert (rep.verdict == "fail") == (variant != "good"), (variant, index, rep.failed)


# --- the daemon's contract (appliance/quality.py) --------------------------------------------------
def _photo(jpeg: bytes, preview: object = None) -> Photo:
    return Photo(jpeg, 4056, 3040, preview)  # type: ignore[arg-type]


@cache
def _qc() -> QualityCheck:
    return QualityCheck(QcConfig(), PhotoSpec())


def _png() -> bytes:
    buf = io.BytesIO()
    sample_portrait(320, 240).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "reason"), [
    (lambda: _shot()[: len(_shot()) // 2], "truncated"),
    (_png, "not a JPEG"),
    (lambda: np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes(), "not a JPEG"),
    (lambda: b"\xff\xd8" + np.random.default_rng(4).integers(0, 256, 20000, dtype=np.uint8).tobytes() + b"\xff\xd9",
     "JPEG"),
])
def test_quality_check_rejects_undecodable_originals(data, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason) as e:
        _qc()(_photo(data()))
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


@pytest.mark.parametrize(("preview", "reason"), [
    (np.zeros((480, 640), np.uint8), "shape"),
    (np.zeros((480, 640, 3), np.float32), "dtype"),
    (np.zeros((480, 640, 1), np.uint8), "shape"),
])
def test_quality_check_rejects_bad_previews(preview: np.ndarray, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        _qc()(_photo(_shot(), preview))


def test_quality_check_turns_internal_errors_into_warnings(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def faces(self, rgb: np.ndarray) -> list[FaceBox]:
            raise RuntimeError("model exploded\nsecond line")

        def landmarks(self, rgb: np.ndarray, face: FaceBox) -> FaceLandmarks | None:
            return None

    qc = QualityCheck(QcConfig(), PhotoSpec())
    import appliance.quality as quality

    orig = quality.assess
    quality.assess = lambda jpeg, cfg, spec: orig(jpeg, cfg, spec, detector=Broken())  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.ERROR, logger="capturekit.qc"):
            out = qc(_photo(_shot()))
    finally:
        quality.assess = orig
    assert out.result == "warn" and out.reasons == ("qc_error: RuntimeError: model exploded",)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]) == 1


def test_quality_check_passes_a_good_shot_with_a_derivative() -> None:
    out = _qc()(_photo(_shot("good", 1)))
    assert out.result in ("pass", "warn") and out.derivative is not None and out.derivative_error is None


# --- samples ---------------------------------------------------------------------------------------
def test_sample_portrait_variants_and_cache() -> None:
    assert "good" in VARIANTS
    with pytest.raises(ValueError):
        sample_portrait(640, 480, "sideways")
    im = sample_portrait(320, 240, "good", 5)
    assert im.size == (320, 240) and im.mode == "RGB"
    sample_portrait(4056, 3040, "good", 0)
    t = time.perf_counter()
    again = sample_portrait(4056, 3040, "good", 0)
    assert time.perf_counter() - t < 0.3
    again.putpixel((0, 0), (0, 0, 0))  # callers get a copy: the cache is not altered
    assert sample_portrait(4056, 3040, "good", 0).getpixel((0, 0)) != (0, 0, 0)


if __name__ == "__main__":
    print(format_tables())


def test_the_package_names_load_on_first_use_and_assess_is_the_function() -> None:
    """appliance.qc loads its checks lazily (the sync daemon must not load OpenCV); whichever name comes first,
    ``assess`` is the function, not the submodule of the same name."""
    import subprocess

    for first in ("CHECK_NAMES", "lores_to_rgb", "assess"):
        probe = (f"import sys; from appliance.qc import {first}; from appliance.qc import assess;"
                 " import appliance.qc as q; print(callable(assess), callable(q.assess), 'cv2' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1]).stdout.split()
        assert out == ["True", "True", "True"], (first, out)
    out = subprocess.run([sys.executable, "-c", "import sys, appliance.qc.config; print('cv2' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"
