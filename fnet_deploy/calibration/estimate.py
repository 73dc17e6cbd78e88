"""Estimating the IR-to-visible map from point pairs or from a frame pair, and checking it.

Every estimate is checked (:func:`check_plausible`) before it is accepted: a degenerate, mirrored
or folded map, an extreme scale, rotation, shear or perspective, a large reprojection error, a poor
image correlation or a tiny common area is rejected with a message naming what is wrong. An affine
map or homography estimated from frames must also align the frames' edges better than the simpler
maps (same field of view, the ecc translation) and keep at least half of their common area
(:func:`check_against_simpler`): with few edges, its extra freedom otherwise fits noise, such as a
rotation that keeps a small, well-matching corner.

From a frame pair, two kinds of method work on gradient magnitude images (IR and visible differ in
contrast, even in polarity, but their edges coincide):

- ``ecc``: intensity-based alignment maximising the enhanced correlation coefficient
  (``cv2.findTransformECC``) coarse to fine, starting from "same field of view". Suited to the
  usual case of two cameras side by side whose views are roughly aligned already.
- ``orb`` / ``sift``: keypoints matched with a ratio test, the map fitted by RANSAC and refitted by
  least squares on the inliers. Independent of a starting guess, but descriptors rarely match
  across modalities; when too few matches agree, the error says so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from fnet_deploy.data.images import Size
from fnet_deploy.helpers.errors import FnetError, InputError
from fnet_deploy.runtime.registration import (
    Rect,
    Registration,
    Transform,
    covered_rectangle,
    project,
    scaling_registration,
)

Method = Literal["ecc", "orb", "sift"]
METHODS: tuple[Method, ...] = ("ecc", "orb", "sift")
MIN_INLIERS = 12
RATIO_TEST = 0.85
ECC_MIN_SIDE = 48
_ECC_MOTION = {
    "translation": cv2.MOTION_TRANSLATION,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


@dataclass(frozen=True)
class Plausibility:
    """Limits beyond which an estimated map is rejected as implausible.

    Attributes:
        min_scale, max_scale: IR-to-visible magnification (geometric mean of the map's local
            singular values at the IR centre).
        max_anisotropy: ratio of the larger to the smaller local singular value (shear,
            unequal axis scales).
        max_rotation: largest rotation (degrees) of the map at the IR centre.
        max_perspective: ratio of the largest to the smallest local area scale over the IR
            corners (how strongly the homography's perspective varies across the frame).
        max_rms_error: largest root-mean-square reprojection error of a fit through point pairs,
            in visible pixels.
        min_correlation: smallest correlation coefficient of the gradient images after an
            ``ecc`` alignment.
        min_overlap: smallest valid crop, as a fraction of the visible frame's area.
        min_overlap_kept: smallest valid crop of an affine map or homography estimated from
            frames, as a fraction of the valid crop of the best simpler map.
    """

    min_scale: float = 0.1
    max_scale: float = 10.0
    max_anisotropy: float = 2.0
    max_rotation: float = 10.0
    max_perspective: float = 4.0
    max_rms_error: float = 3.0
    min_correlation: float = 0.3
    min_overlap: float = 0.05
    min_overlap_kept: float = 0.5


def _collinear(points: np.ndarray) -> bool:
    """Whether N x 2 ``points`` lie on one line or one spot (to rounding)."""
    spread = points - points.mean(axis=0)
    return bool(np.linalg.matrix_rank(spread, tol=1e-6 * (1.0 + np.abs(points).max())) < 2)


def fit_points(ir_points: np.ndarray, vis_points: np.ndarray, transform: Transform) -> np.ndarray:
    """Least-squares map from point pairs.

    Args:
        ir_points, vis_points: N x 2 pixel coordinates (N >= 4 for a homography, >= 3 for an
            affine map, >= 1 for a translation).

    Returns:
        3 x 3 float64 matrix with ``M[2, 2] == 1``.
    """
    src = np.asarray(ir_points, np.float64).reshape(-1, 2)
    dst = np.asarray(vis_points, np.float64).reshape(-1, 2)
    need = {"homography": 4, "affine": 3, "translation": 1}[transform]
    if len(src) != len(dst) or len(src) < need:
        raise FnetError(f"a {transform} needs at least {need} point pairs, got {len(src)}")
    if transform == "translation":
        shift = (dst - src).mean(axis=0)
        return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    for name, points in (("IR", src), ("visible", dst)):
        if _collinear(points):
            raise FnetError(
                f"the {name} points all lie on one line (or one spot): a {transform} needs "
                "points spread over the frame, not collinear"
            )
    if transform == "homography":
        matrix, _ = cv2.findHomography(src, dst, 0)
        if matrix is None or not abs(matrix[2, 2]) > 1e-12:
            raise FnetError("the points do not determine a homography (collinear or repeated?)")
        return np.asarray(matrix, np.float64) / matrix[2, 2]
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, _, rank, _ = np.linalg.lstsq(design, dst, rcond=None)
    if rank < 3:
        raise FnetError("the points do not determine an affine map (collinear or repeated?)")
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def reprojection_errors(
    matrix: np.ndarray, ir_points: np.ndarray, vis_points: np.ndarray
) -> np.ndarray:
    """Distance (visible pixels) between mapped IR points and their visible partners, N."""
    return np.linalg.norm(
        project(matrix, ir_points) - np.asarray(vis_points).reshape(-1, 2), axis=1
    )


def check_plausible(
    matrix: np.ndarray,
    ir_size: Size,
    vis_size: Size,
    limits: Plausibility,
    rms_error: float | None = None,
    correlation: float | None = None,
) -> Rect:
    """Reject degenerate or implausible maps; returns the valid crop of an accepted one.

    ``rms_error`` (point fits) and ``correlation`` (``ecc``) are checked when given.

    Raises:
        FnetError: naming every limit the map breaks.
    """
    problems: list[str] = []
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
        raise FnetError("implausible map: degenerate (singular or not finite)")
    w, h = ir_size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    denominators = np.hstack([corners, np.ones((4, 1))]) @ matrix[2]
    if (denominators <= 0).any():
        raise FnetError("implausible map: the IR frame crosses the horizon of the homography")
    quad = project(matrix, corners)
    edges = np.roll(quad, -1, axis=0) - quad
    turns = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    if not (turns > 0).all():
        raise FnetError("implausible map: the IR frame is mirrored or folded")
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    singular = np.linalg.svd(_jacobian(matrix, centre), compute_uv=False)
    scale = float(np.sqrt(singular[0] * singular[1]))
    anisotropy = float(singular[0] / singular[1])
    rotation = rotation_degrees(matrix, centre)
    areas = [abs(np.linalg.det(_jacobian(matrix, c))) for c in corners]
    perspective = max(areas) / min(areas)
    if not limits.min_scale <= scale <= limits.max_scale:
        problems.append(f"scale {scale:.3g} outside [{limits.min_scale:g}, {limits.max_scale:g}]")
    if anisotropy > limits.max_anisotropy:
        problems.append(f"shear/anisotropy {anisotropy:.3g} > {limits.max_anisotropy:g}")
    if abs(rotation) > limits.max_rotation:
        problems.append(f"rotation {rotation:.3g} degrees > {limits.max_rotation:g}")
    if perspective > limits.max_perspective:
        problems.append(f"perspective ratio {perspective:.3g} > {limits.max_perspective:g}")
    if rms_error is not None and not rms_error <= limits.max_rms_error:
        problems.append(f"rms reprojection error {rms_error:.3g} px > {limits.max_rms_error:g}")
    if correlation is not None and not correlation >= limits.min_correlation:
        problems.append(
            f"gradient correlation {correlation:.3g} < {limits.min_correlation:g} (not the same "
            "scene, or too far from aligned for ecc)"
        )
    crop = covered_rectangle(matrix, ir_size, vis_size)
    overlap = crop[2] * crop[3] / (vis_size[0] * vis_size[1])
    if overlap < limits.min_overlap:
        problems.append(
            f"common area {overlap:.1%} of the visible frame < {limits.min_overlap:.0%}"
        )
    if problems:
        raise FnetError(f"implausible map: {'; '.join(problems)}")
    return crop


def rotation_degrees(matrix: np.ndarray, point: np.ndarray) -> float:
    """Rotation of the map at ``point``, in degrees (positive turns +x towards +y: clockwise on
    screen): the angle of the rotation nearest to its local 2 x 2 derivative."""
    jac = _jacobian(matrix, point)
    return float(np.degrees(np.arctan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1])))


def edge_agreement(matrix: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """How well a map aligns the frames' edges: correlation coefficient, over the whole visible
    frame, of its gradient image and the warped IR gradient image (zero where the IR frame does
    not reach, so that a map keeping only a small common area scores low).

    Args:
        matrix: 3 x 3 IR-to-visible map.
        ir, vis: single-channel frames (any dtype).
    """
    vis_edges = gradient_image(vis).astype(np.float32)
    warped = cv2.warpPerspective(
        gradient_image(ir).astype(np.float32),
        matrix,
        (vis.shape[1], vis.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    if warped.std() == 0 or vis_edges.std() == 0:
        return 0.0
    return float(np.corrcoef(warped.ravel(), vis_edges.ravel())[0, 1])


def check_against_simpler(
    registration: Registration, ir: np.ndarray, vis: np.ndarray, limits: Plausibility
) -> None:
    """Refuse an affine map or homography estimated from a frame pair that a simpler map explains
    as well: it must align the edges better (:func:`edge_agreement`) than both "same field of
    view" and the ecc translation (when that converges), and keep at least
    ``limits.min_overlap_kept`` of the better one's common area.

    Raises:
        FnetError: one line naming the map, what is wrong, and what to do.
    """
    simpler = [
        (
            "same field of view",
            scaling_registration(registration.ir_size, registration.vis_size).matrix,
        )
    ]
    with contextlib.suppress(FnetError):  # no translation either: compare with the first
        simpler.append(("the translation fit", _ecc_matrix(ir, vis, "translation")[0]))
    scored = [(edge_agreement(m, ir, vis), name, m) for name, m in simpler]
    best_score, best_name, best = max(scored, key=lambda item: item[0])
    score = edge_agreement(registration.matrix, ir, vis)
    area = _area(
        covered_rectangle(registration.matrix, registration.ir_size, registration.vis_size)
    )
    best_area = _area(covered_rectangle(best, registration.ir_size, registration.vis_size))
    problems = []
    if area < limits.min_overlap_kept * best_area:
        problems.append(f"common area {area / best_area:.0%} of {best_name}'s")
    if not score > best_score:
        problems.append(
            f"edges agree less than with {best_name} (gradient correlation {score:.3f} vs "
            f"{best_score:.3f})"
        )
    if problems:
        centre = np.array([(registration.ir_size[0] - 1) / 2, (registration.ir_size[1] - 1) / 2])
        rotation = rotation_degrees(registration.matrix, centre)
        raise FnetError(
            f"implausible {registration.transform} (rotation {rotation:.1f} degrees): "
            f"{'; '.join(problems)}; use --transform translation, another frame pair, or point "
            "pairs (--points)"
        )


def _area(rect: Rect) -> int:
    return rect[2] * rect[3]


def _jacobian(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    """2 x 2 derivative of the projective map at ``point``."""
    x, y = float(point[0]), float(point[1])
    num = matrix[:2] @ np.array([x, y, 1.0])
    den = float(matrix[2] @ np.array([x, y, 1.0]))
    return (matrix[:2, :2] * den - np.outer(num, matrix[2, :2])) / den**2


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Point pairs from a text file: one ``x_ir y_ir x_vis y_vis`` per line.

    Numbers are separated by commas and/or spaces; ``#`` starts a comment; a first line that is
    not numbers (a CSV header) is skipped.

    Returns:
        ``(ir_points, vis_points)``, each N x 2 float64.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(path, f"cannot read points file ({err.strerror or err})") from None
    rows: list[list[float]] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        try:
            values = [float(v) for v in text]
        except ValueError:
            if not rows and number == 1:
                continue
            raise InputError(path, f"line {number}: expected four numbers") from None
        if len(values) != 4 or not np.isfinite(values).all():
            raise InputError(path, f"line {number}: expected four numbers x_ir y_ir x_vis y_vis")
        rows.append(values)
    if not rows:
        raise InputError(path, "no point pairs")
    data = np.array(rows, np.float64)
    return data[:, :2], data[:, 2:]


def estimate_from_points(
    ir_points: np.ndarray,
    vis_points: np.ndarray,
    transform: Transform,
    ir_size: Size,
    vis_size: Size,
    limits: Plausibility | None = None,
) -> Registration:
    """Fit and check a map through user-picked point pairs (all used, least squares)."""
    limits = limits or Plausibility()
    matrix = fit_points(ir_points, vis_points, transform)
    errors = reprojection_errors(matrix, ir_points, vis_points)
    rms = float(np.sqrt(np.mean(errors**2)))
    crop = check_plausible(matrix, ir_size, vis_size, limits, rms_error=rms)
    fit = _fit_info("points", len(errors), len(errors), errors)
    return Registration(matrix, transform, ir_size, vis_size, crop, fit)


def estimate_from_images(
    ir: np.ndarray,
    vis: np.ndarray,
    transform: Transform,
    method: Method = "ecc",
    limits: Plausibility | None = None,
) -> Registration:
    """Estimate and check the map between an IR and a visible frame of the same moment.

    Args:
        ir, vis: single-channel frames (any dtype); their sizes may differ.
        transform: ``homography``, ``affine`` or ``translation``.
        method: ``ecc`` (intensity alignment from "same field of view") or ``orb`` / ``sift``
            (feature matching with RANSAC).
        limits: plausibility limits (the defaults when ``None``).
    """
    limits = limits or Plausibility()
    if method == "ecc":
        registration = _estimate_ecc(ir, vis, transform, limits)
    else:
        registration = _estimate_features(ir, vis, transform, method, limits)
    if transform != "translation":
        check_against_simpler(registration, ir, vis, limits)
    return registration


def _estimate_features(
    ir: np.ndarray,
    vis: np.ndarray,
    transform: Transform,
    detector: Method,
    limits: Plausibility,
    ransac_threshold: float = 3.0,
) -> Registration:
    ir_points, vis_points = match_features(gradient_image(ir), gradient_image(vis), detector)
    if len(ir_points) < MIN_INLIERS:
        raise FnetError(
            f"only {len(ir_points)} feature matches between the frames (need {MIN_INLIERS}); "
            "try --method ecc, another frame pair, or point pairs (--points)"
        )
    if transform == "homography":
        _, mask = cv2.findHomography(ir_points, vis_points, cv2.RANSAC, ransac_threshold)
    else:
        _, mask = cv2.estimateAffine2D(
            ir_points, vis_points, method=cv2.RANSAC, ransacReprojThreshold=ransac_threshold
        )
    inliers = np.zeros(len(ir_points), bool) if mask is None else mask.ravel().astype(bool)
    if inliers.sum() < MIN_INLIERS:
        raise FnetError(
            f"only {int(inliers.sum())} of {len(ir_points)} feature matches agree on one map "
            f"(need {MIN_INLIERS}); try --method ecc, another frame pair, or point pairs "
            "(--points)"
        )
    matrix = fit_points(ir_points[inliers], vis_points[inliers], transform)
    errors = reprojection_errors(matrix, ir_points[inliers], vis_points[inliers])
    rms = float(np.sqrt(np.mean(errors**2)))
    ir_size: Size = (ir.shape[1], ir.shape[0])
    vis_size: Size = (vis.shape[1], vis.shape[0])
    crop = check_plausible(matrix, ir_size, vis_size, limits, rms_error=rms)
    fit = _fit_info(detector, len(ir_points), int(inliers.sum()), errors)
    return Registration(matrix, transform, ir_size, vis_size, crop, fit)


def _estimate_ecc(
    ir: np.ndarray, vis: np.ndarray, transform: Transform, limits: Plausibility
) -> Registration:
    ir_size: Size = (ir.shape[1], ir.shape[0])
    vis_size: Size = (vis.shape[1], vis.shape[0])
    matrix, correlation, levels = _ecc_matrix(ir, vis, transform)
    crop = check_plausible(matrix, ir_size, vis_size, limits, correlation=correlation)
    fit = {"method": "ecc", "correlation": round(correlation, 4), "levels": levels}
    return Registration(matrix, transform, ir_size, vis_size, crop, fit)


def _ecc_matrix(
    ir: np.ndarray, vis: np.ndarray, transform: Transform
) -> tuple[np.ndarray, float, int]:
    """Coarse-to-fine ECC on gradient images (the warp maps visible to IR coordinates).

    Returns:
        The IR-to-visible 3 x 3 map, the final correlation coefficient and the pyramid levels.
    """
    ir_size: Size = (ir.shape[1], ir.shape[0])
    vis_size: Size = (vis.shape[1], vis.shape[0])
    template = gradient_image(vis).astype(np.float32) / 255.0
    moving = gradient_image(ir).astype(np.float32) / 255.0
    warp = np.linalg.inv(scaling_registration(ir_size, vis_size).matrix)
    smallest = min(*template.shape, *moving.shape)
    levels = 1
    while smallest // 2**levels >= ECC_MIN_SIDE and levels < 4:
        levels += 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    correlation = 0.0
    for level in reversed(range(levels)):
        factor = 2.0**level
        to_level = np.diag([1.0 / factor, 1.0 / factor, 1.0])
        t = _shrink(template, factor)
        m = _shrink(moving, factor)
        level_warp = (to_level @ warp @ np.linalg.inv(to_level)).astype(np.float32)
        rows = 3 if transform == "homography" else 2
        try:
            correlation, found = cv2.findTransformECC(
                t, m, level_warp[:rows], _ECC_MOTION[transform], criteria
            )
        except cv2.error:
            raise FnetError(
                "ecc alignment did not converge (frames too different or too far from aligned); "
                "give point pairs (--points) or try another frame pair"
            ) from None
        level_warp[:rows] = np.asarray(found)
        warp = np.linalg.inv(to_level) @ level_warp.astype(np.float64) @ to_level
    matrix = np.linalg.inv(warp)
    matrix /= matrix[2, 2]
    return matrix, float(correlation), levels


def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return image
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def gradient_image(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a single-channel image as uint8 (99.5th percentile -> 255), H x W."""
    data = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    magnitude = cv2.magnitude(cv2.Sobel(data, cv2.CV_32F, 1, 0), cv2.Sobel(data, cv2.CV_32F, 0, 1))
    top = float(np.percentile(magnitude, 99.5))
    if top <= 0:
        return np.zeros(image.shape[:2], np.uint8)
    return np.clip(magnitude * (255.0 / top), 0, 255).astype(np.uint8)


def match_features(
    ir: np.ndarray, vis: np.ndarray, detector: Method = "orb"
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint (``orb`` or ``sift``) matches that pass the ratio test, as two N x 2 float32
    arrays (IR, visible)."""
    finder: cv2.Feature2D
    if detector == "sift":
        finder, norm = cv2.SIFT.create(nfeatures=4000), cv2.NORM_L2
    else:
        finder, norm = cv2.ORB.create(nfeatures=4000), cv2.NORM_HAMMING
    ir_keys, ir_desc = finder.detectAndCompute(ir, None)
    vis_keys, vis_desc = finder.detectAndCompute(vis, None)
    empty = np.zeros((0, 2), np.float32)
    if ir_desc is None or vis_desc is None or len(ir_keys) < 2 or len(vis_keys) < 2:
        return empty, empty.copy()
    matches = cv2.BFMatcher(norm).knnMatch(ir_desc, vis_desc, k=2)
    good = [
        pair[0]
        for pair in matches
        if len(pair) == 2 and pair[0].distance < RATIO_TEST * pair[1].distance
    ]
    ir_points = np.array([ir_keys[m.queryIdx].pt for m in good], np.float32).reshape(-1, 2)
    vis_points = np.array([vis_keys[m.trainIdx].pt for m in good], np.float32).reshape(-1, 2)
    return ir_points, vis_points


def _fit_info(
    method: str, pairs: int, inliers: int, errors: np.ndarray
) -> dict[str, float | int | str]:
    return {
        "method": method,
        "pairs": pairs,
        "inliers": inliers,
        "rms_error_px": round(float(np.sqrt(np.mean(errors**2))), 4),
        "max_error_px": round(float(errors.max()), 4),
    }
