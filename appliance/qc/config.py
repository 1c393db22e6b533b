"""Every QC threshold and every diploma-photo figure, as flat frozen dataclasses.

The kit's TOML loader builds these from the ``[qc]`` and ``[photo_spec]`` tables key by key, so fields
are plain types only (tuples of numbers for ranges). Range tuples are ``(low, high)``.

QC thresholds marked *tuned* were set on the "tuned" people of the evaluation set (tests/data/eval: real
photographs of 16 people composited on the backdrop, with controlled faults) and checked on the held-out
people; they are still not a calibration of a real kit. Calibrate them from real frames of the kit's own
camera as described in ``docs/qc.md`` before relying on them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QcConfig:
    """Shot-time quality-check settings. Fractions are of the analysed frame's width or height."""

    # the kit runs QC on every shot (off: every photo passes and the record says "qc_off")
    enabled: bool = True

    # --- analysis -----------------------------------------------------------------------------------
    # px: a JPEG is decoded with Pillow draft() to the smallest DCT scale at least this wide
    # (4056 -> 1014 px, 1/4 scale, ~20 ms instead of ~120 ms for a full decode).
    analysis_min_width: int = 1000
    # 0..1: detector confidence below which a face is ignored (MediaPipe's own default).
    detection_min_confidence: float = 0.5
    # ratio: a second face at least this fraction of the main face's width counts as a second sitter
    # (fail); smaller ones are people far behind (warn). Placeholder.
    other_face_min_ratio: float = 0.5

    # --- framing ------------------------------------------------------------------------------------
    # fraction of frame width: |face centre - frame centre|; beyond warn -> warn, beyond fail -> fail.
    # Placeholder, chosen so the derivative crop (face width ~ 0.5 of crop width) stays inside the frame.
    centre_offset_warn: float = 0.06
    centre_offset_fail: float = 0.12
    # fraction of frame height: where the eye line may sit. Inside pass range -> pass; inside fail range
    # -> warn; outside -> fail. Placeholder from the derivative's geometry at face width ~0.2 of frame.
    eye_height_pass: tuple[float, float] = (0.30, 0.52)
    eye_height_fail: tuple[float, float] = (0.22, 0.60)
    # fraction of frame width: cheek-to-cheek face width. Same pass/warn/fail scheme. Placeholder: the
    # kit frames a face at ~0.2 of the width; below 0.10 the 480x640 derivative is cut from < 800 px.
    face_size_pass: tuple[float, float] = (0.14, 0.32)
    face_size_fail: tuple[float, float] = (0.10, 0.40)

    # --- head pose ----------------------------------------------------------------------------------
    # degrees: tilt of the line through both iris centres. The registry rejects "pupils not level";
    # its tolerance is unpublished. Placeholder.
    roll_warn_deg: float = 4.0
    roll_fail_deg: float = 8.0
    # degrees: head turn, from the depth difference of the two cheek points of the face mesh (an estimate,
    # not a measured angle). Tuned: frontal sitters 0-8, turned ones (~30-45 deg) 20-40.
    yaw_warn_deg: float = 10.0
    yaw_fail_deg: float = 18.0

    # --- light on the face --------------------------------------------------------------------------
    # 0..255 luma (BT.601), 90th percentile of the face skin (eyes and mouth excluded): the lit part of the
    # face. Pass range / fail range as for eye height. Tuned; wide at the low end so that dark skin
    # correctly exposed passes — the evaluation set has few dark-skinned sitters: calibrate with a range of
    # skin tones.
    face_luma_pass: tuple[float, float] = (110.0, 246.0)
    face_luma_fail: tuple[float, float] = (85.0, 253.0)
    # 0..255: a face pixel with all three channels at or above this is clipped (glare, hot spot; one
    # channel alone clips on bright skin without any visible fault).
    clip_level: int = 250
    # fraction of face-outline pixels clipped: warn above / fail above. Placeholder.
    clipped_warn: float = 0.005
    clipped_fail: float = 0.03
    # ratio |L - R| / mean(L, R) of the two cheek patches' median luma (0.2 face widths). Tuned: the
    # light on the evaluation people as photographed measures up to ~0.33, the one-side-lit variant 0.4+.
    illumination_warn: float = 0.25
    illumination_fail: float = 0.36

    # --- sharpness ----------------------------------------------------------------------------------
    # px: the face is resampled to this cheek-to-cheek width before measuring, so the value does not
    # depend on the camera's resolution or distance. 128 = face width in a 640x480 lores frame at the
    # kit's framing (about half the derivative's 240 px face).
    sharpness_face_px: int = 128
    # ratio RMS(Laplacian) / RMS(gradient) at that scale (see checks.sharpness_value). Below warn ->
    # warn, below fail -> fail. Placeholder from the evaluation set: sharp frames 0.83-1.24, the
    # blurred variant (Gaussian sigma 0.02 face widths) 0.35-0.48.
    sharpness_warn: float = 0.70
    sharpness_fail: float = 0.60

    # --- eyes ---------------------------------------------------------------------------------------
    # ratio lid gap / eye width (eye aspect ratio), smaller eye, from the iris model's refined lids. Open
    # eyes measure 0.21-0.40 on the evaluation people, the synthetic closed-eye variant 0.13-0.19 (the model
    # tends to keep a slit open on painted-over eyes; real closed eyes usually go below 0.1). Tuned.
    eye_open_warn: float = 0.19
    eye_open_fail: float = 0.165
    # ratio (p90 - p10 luma inside the eye contour) / cheek luma, smaller eye: an open, visible eye
    # shows white sclera and a dark iris; tinted lenses, a hand or an occluder do not. Placeholder.
    # Evaluation set: visible eyes 0.43-0.76 (0.24 when blurred), tinted lenses 0.02-0.03.
    eye_visible_warn: float = 0.30
    eye_visible_fail: float = 0.12

    # --- mouth ----------------------------------------------------------------------------------------
    # ratio inner-lip gap / inner mouth width (mouth aspect ratio). "Lips closed" (photo spec): closed and
    # moderately smiling mouths measure < 0.05, parted lips and open mouths > 0.15. Tuned.
    mouth_open_warn: float = 0.08
    mouth_open_fail: float = 0.15

    # --- background ---------------------------------------------------------------------------------
    # sRGB: the backdrop colour expected (photo-spec light blue; white/grey where a province asks).
    background_rgb: tuple[int, int, int] = (100, 197, 255)
    # CIE76 delta E between the median colour of the whole backdrop area and background_rgb. Placeholder:
    # camera white balance and exposure move this; calibrate on the kit's own camera and backdrop.
    background_delta_e_warn: float = 12.0
    background_delta_e_fail: float = 25.0
    # The whole backdrop area (the frame minus a generous silhouette of the sitter) is compared with its
    # median colour: a pixel further than this CIE76 delta E is an outlier (object, other person, shadow).
    background_outlier_delta_e: float = 14.0
    # fraction of backdrop pixels that are outliers: warn above / fail above. Tuned: the LED-lit backdrop
    # measures ~0, a person leaning in or a classroom wall 0.1-0.9.
    background_spread_warn: float = 0.03
    background_spread_fail: float = 0.08

    # --- clothing -----------------------------------------------------------------------------------
    # The upper body below the neck (0.45-1.5 face widths under the chin, +-1 face width) is compared
    # with the *configured* background_rgb: a pixel closer than this CIE76 delta E looks like the backdrop.
    # For scale, against RGB(100,197,255): white 44, light grey 39, mid blue (60,120,200) 34, pale blue
    # (170,210,240) 20, light-blue shirt (120,170,220) 13, navy 66.
    clothing_like_delta_e: float = 20.0
    # fraction of those pixels that look like the backdrop: warn above / fail above ("clothing must differ
    # clearly from the background"; a light-blue top fails whatever its collar). Tuned.
    clothing_like_warn: float = 0.2
    clothing_like_fail: float = 0.35


@dataclass(frozen=True)
class PhotoSpec:
    """The diploma-photo derivative (sources per figure in docs/photo-spec.md)."""

    # px: output size, 480 wide x 640 high.
    width_px: int = 480
    height_px: int = 640
    # dpi written into the JFIF header.
    dpi: int = 300
    # px from the top edge: eye line (centre of the two iris centres).
    eyes_from_top_px: tuple[int, int] = (200, 300)
    # px from the top edge: top of the head (头顶/头部发际, top of the hair outline).
    head_top_from_top_px: tuple[int, int] = (50, 110)
    # px: face width cheek to cheek.
    face_width_px: tuple[int, int] = (180, 300)
    # px: how far the face centre may sit from the output's vertical centre line when the frame edge
    # forces it ("centred, symmetric" has no published tolerance; the social-security photo spec allows
    # the eye midpoint +-17 px of 358). Small on purpose.
    max_centre_offset_px: int = 12
    # preferred positions inside those ranges (the crop is solved towards them).
    target_eyes_from_top_px: int = 250
    target_head_top_px: int = 80
    target_face_width_px: int = 240
    # bytes: the encoded file must land in this range. Sources disagree ("usually 20-40 KB", "at least
    # 30 KB", "under 40 KB"); 30 KiB..40 kB satisfies all three whichever KB is meant.
    file_size_bytes: tuple[int, int] = (30720, 40000)
    # JPEG quality search range; the spec asks for quality >= 60.
    jpeg_quality_min: int = 60
    jpeg_quality_max: int = 95
    # source px per output px at least: below 1.0 the derivative would be upscaled.
    min_source_scale: float = 1.0
