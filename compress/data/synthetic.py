"""Built-in SYNTHETIC face data set: a deterministic procedural generator of face identities.

THE IMAGES PRODUCED HERE ARE SYNTHETIC CARTOONS, FOR DEMOS, SMOKE RUNS AND TESTS ONLY.  Accuracy numbers
measured on them say nothing about accuracy on real faces; use a real data set (LFW, CFP, AgeDB, ...) for
any claim about a model.

Why it exists: ``compress`` has to run end to end on a fresh machine without downloads, so it ships a
generator of *aligned* 112x112 RGB face crops, roughly in the ArcFace reference position (eyes near
(38, 52) and (74, 52), nose tip near (56, 72), mouth corners near y = 92).

Model
-----
* An *identity* is a vector of continuous shape and appearance parameters (face outline width, crown
  height, jaw squareness and taper, chin width and height; skin tone; eye spacing, size, shape, tilt and
  iris colour; eyebrow position, length, arch, slope and thickness; nose length, width and protrusion;
  mouth width and lip thicknesses; ear size; hair colour, style, volume and hairline shape; moles,
  freckle pattern, beard/moustache, habitual glasses, age).  Parameters come from
  ``np.random.default_rng([seed, identity])``, so any number of identities can be generated and
  identity ``i`` is the same face whatever else is generated.
* Every *image* of an identity draws nuisance parameters from
  ``np.random.default_rng([seed, identity, sample, 1])``: head pose (yaw, pitch; the face is drawn on a
  simple 3-D head so features shift and one side compresses), a simulated 5-point aligner (landmark noise,
  residual roll, scale and shift jitter), expression (smile, open mouth, eyebrow raise, blink/squint,
  gaze), lighting (direction, intensity, colour cast, side shadow), occlusion (face mask, glasses,
  sunglasses, a random occluder), age cues (wrinkles, grey hair), background, gaussian blur, sensor
  noise, JPEG artefacts and occasional grey-scale.
* Rendering is OpenCV anti-aliased polygon filling with sub-pixel coordinates plus a few vectorised
  numpy passes; no external assets.

Determinism: ``render(identity, sample, seed)`` returns the byte-identical image every time, on any
batch composition, order or worker count (each image depends only on its own three integers).  Byte
identity across different OpenCV/numpy builds or CPU architectures is not promised.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import cv2
import numpy as np

__all__ = ["SIZE", "REFERENCE_LANDMARKS", "render", "generate", "write_image_folder", "identity_params"]

SIZE = 112

#: ArcFace / InsightFace reference 5-point landmarks for a 112x112 crop (left eye, right eye, nose tip,
#: left mouth corner, right mouth corner), in (x, y) pixels.
REFERENCE_LANDMARKS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

_SHIFT = 4  # cv2 sub-pixel bits
_MUL = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# ---------------------------------------------------------------------------------------------------
# colour palettes
# ---------------------------------------------------------------------------------------------------
_SKIN = np.array(
    [[247, 215, 195], [236, 192, 160], [214, 162, 125], [182, 128, 90], [140, 92, 62], [96, 62, 42]],
    dtype=np.float64,
)
_HAIR = np.array(
    [[22, 18, 16], [48, 34, 26], [88, 58, 36], [130, 90, 55], [196, 160, 105], [226, 200, 150],
     [150, 72, 38]],
    dtype=np.float64,
)
_IRIS = np.array(
    [[42, 28, 20], [90, 56, 30], [118, 96, 52], [78, 108, 66], [80, 122, 172], [118, 128, 140]],
    dtype=np.float64,
)


def _interp_palette(pal: np.ndarray, t: float) -> np.ndarray:
    t = min(max(t, 0.0), 1.0) * (len(pal) - 1)
    i = min(int(t), len(pal) - 2)
    f = t - i
    return pal[i] * (1.0 - f) + pal[i + 1] * f


def _col(c) -> tuple:
    return tuple(float(min(max(v, 0.0), 255.0)) for v in c)


# ---------------------------------------------------------------------------------------------------
# identity parameters
# ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def identity_params(identity: int, seed: int = 0) -> dict:
    """The (cached, read-only by convention) shape and appearance parameters of one identity."""
    if identity < 0 or seed < 0:
        raise ValueError("identity and seed must be non-negative integers")
    rng = np.random.default_rng([int(seed), int(identity)])
    u = rng.uniform
    p: dict = {}
    masc = float(rng.beta(0.7, 0.7))  # 0 = feminine traits, 1 = masculine traits
    p["masc"] = masc
    age = float(rng.beta(1.6, 2.2))
    p["age"] = age
    # geometry (face coordinates: origin between the eyes, x right, y down, units ~ pixels at 112)
    p["eye_dx"] = u(15.0, 20.0)
    p["ew"] = u(6.6, 9.6)  # eye half-width
    p["eh"] = p["ew"] * u(0.30, 0.55)  # upper lid height
    p["eh_lo"] = p["eh"] * u(0.45, 0.8)
    p["eye_tilt"] = math.radians(rng.normal(0.0, 5.0))
    p["eye_pow"] = u(0.55, 1.1)  # almond (small) .. round (large)
    p["iris_r"] = p["ew"] * u(0.38, 0.5)
    p["iris"] = _interp_palette(_IRIS, u(0, 1)) * u(0.85, 1.15)
    p["lid_dark"] = u(0.25, 0.75)
    p["brow_y"] = -u(8.5, 14.0)
    p["brow_th"] = u(1.3, 2.6) + 1.6 * masc * u(0.3, 1.0)
    p["brow_arch"] = u(0.3, 4.5)
    p["brow_slope"] = rng.normal(0.0, 1.8)
    p["brow_in"] = u(0.7, 1.15)
    p["brow_out"] = u(1.0, 1.5)
    p["brow_alpha"] = u(0.55, 0.95)
    p["nose_y"] = u(16.5, 24.5)
    p["nose_w"] = u(5.5, 10.0) + 1.0 * masc
    p["nose_pro"] = u(7.0, 15.0)
    p["nostril"] = u(0.8, 1.9)
    p["mouth_y"] = p["nose_y"] + u(14.0, 22.0)
    p["mouth_w"] = u(9.5, 15.5)
    p["lip_up"] = u(1.3, 3.8) * (1.15 - 0.3 * masc)
    p["lip_lo"] = u(2.0, 5.2) * (1.15 - 0.25 * masc)
    p["bow"] = u(0.0, 1.2)
    p["W"] = u(33.0, 41.5) + 1.5 * masc
    p["cheek_y"] = u(2.0, 14.0)
    p["crown"] = u(58.0, 74.0)
    p["chin_y"] = p["mouth_y"] + u(14.0, 22.0)
    p["chin_w"] = u(2.0, 10.0) + 3.0 * masc
    p["jaw_p"] = u(1.5, 2.6) + 0.7 * masc
    p["jaw_taper"] = u(0.0, 0.2)
    p["depth"] = u(25.0, 34.0)
    p["ear_y"] = u(6.0, 16.0)
    p["ear_h"] = u(8.0, 13.0)
    p["ear_w"] = u(3.0, 6.0)
    # appearance
    tone = float(rng.beta(1.3, 1.6))
    skin = _interp_palette(_SKIN, tone) * np.exp(rng.normal(0.0, 0.04, 3))
    skin[0] *= u(0.98, 1.06)  # redness
    p["skin"] = np.clip(skin, 30, 255)
    p["tone"] = tone
    lip = p["skin"] * u(0.55, 0.8) + np.array([150.0, 40.0, 50.0]) * u(0.15, 0.45)
    p["lip"] = np.clip(lip, 20, 255)
    p["blush"] = u(0.0, 0.25) * (1.0 - 0.6 * masc)
    if tone > 0.6 or rng.random() < 0.45:
        hair_t = u(0.0, 0.25)
    else:
        hair_t = u(0.0, 1.0)
    p["hair"] = _interp_palette(_HAIR, hair_t) * np.exp(rng.normal(0.0, 0.05, 3))
    style_w = np.array([0.34, 0.22, 0.1, 0.14, 0.2])  # short, long, buzz/bald, curly, fringe
    style_w = style_w * np.array([0.6 + 0.8 * masc, 1.7 - 1.5 * masc, 0.3 + 1.5 * masc, 1.0, 1.0])
    p["style"] = int(rng.choice(5, p=style_w / style_w.sum()))
    p["hair_vol"] = u(1.5, 9.0) + (4.0 if p["style"] == 3 else 0.0)
    p["hairline"] = -u(25.0, 36.0) + (7.0 if p["style"] == 4 else 0.0)
    p["hl_curve"] = u(2.0, 14.0)
    p["recede"] = u(0.0, 9.0) * age * masc
    p["part"] = rng.normal(0.0, 4.0)
    p["curl_phase"] = u(0, 2 * math.pi)
    p["curl_k"] = int(rng.integers(9, 16))
    p["long_len"] = u(55.0, 110.0)
    p["sideburn"] = u(-6.0, 8.0)
    # marks
    n_moles = int(rng.poisson(0.9))
    p["moles"] = np.column_stack(
        [u(-0.75, 0.75, n_moles), u(-20.0, 55.0, n_moles), u(0.6, 1.7, n_moles), u(0.4, 0.9, n_moles)]
    ) if n_moles else np.zeros((0, 4))
    if rng.random() < 0.2:
        k = int(rng.integers(15, 60))
        side = rng.choice([-1.0, 1.0], k)
        fx = side * np.abs(rng.normal(12.0, 8.0, k))
        fy = rng.normal(14.0, 6.0, k)
        p["freckles"] = np.column_stack([fx, fy])
        p["freckle_a"] = u(0.15, 0.4)
    else:
        p["freckles"] = np.zeros((0, 2))
        p["freckle_a"] = 0.0
    beard_style = 0
    if rng.random() < 0.55 * masc:
        beard_style = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.15, 0.2]))  # stubble, full, goatee, moustache
    p["beard"] = beard_style
    p["beard_a"] = u(0.25, 0.45) if beard_style == 1 else u(0.7, 0.95)
    p["beard_top"] = u(-4.0, 6.0)
    # glasses habit
    p["glasses_rate"] = u(0.55, 0.95) if rng.random() < 0.15 else 0.03
    p["frame"] = _col(np.array([25, 25, 25]) + rng.uniform(0, 1) * np.array([140, 110, 80]))
    p["frame_th"] = 1 if rng.random() < 0.6 else 2
    p["lens_pow"] = u(2.0, 5.0)
    p["lens_w"] = u(1.35, 1.7)
    p["lens_h"] = u(0.95, 1.3)
    return p


# ---------------------------------------------------------------------------------------------------
# drawing helpers
# ---------------------------------------------------------------------------------------------------
def _ipts(p: np.ndarray) -> np.ndarray:
    return np.round(p * _MUL).astype(np.int32).reshape(-1, 1, 2)


class _Canvas:
    def __init__(self, img: np.ndarray, scale: float):
        self.img = img
        self.h, self.w = img.shape[:2]
        self.s = scale

    def _roi(self, pts: np.ndarray, pad: float):
        x0 = max(0, int(math.floor(pts[:, 0].min() - pad)))
        y0 = max(0, int(math.floor(pts[:, 1].min() - pad)))
        x1 = min(self.w, int(math.ceil(pts[:, 0].max() + pad)) + 1)
        y1 = min(self.h, int(math.ceil(pts[:, 1].max() + pad)) + 1)
        return x0, y0, x1, y1

    def _blend(self, mask: np.ndarray, x0: int, y0: int, color, alpha: float):
        a = mask.astype(np.float32) * np.float32(alpha / 255.0)
        sub = self.img[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]].astype(np.float32)
        sub += (np.asarray(color, np.float32) - sub) * a[..., None]
        self.img[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = (sub + 0.5).astype(np.uint8)

    def fill(self, pts: np.ndarray, color, alpha: float = 1.0):
        if alpha <= 0.004 or len(pts) < 3:
            return
        if alpha >= 0.996:
            cv2.fillPoly(self.img, [_ipts(pts)], _col(color), _AA, _SHIFT)
            return
        x0, y0, x1, y1 = self._roi(pts, 2)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [_ipts(pts - (x0, y0))], 255, _AA, _SHIFT)
        self._blend(mask, x0, y0, color, alpha)

    def line(self, pts: np.ndarray, color, th: float, alpha: float = 1.0, closed: bool = False):
        if alpha <= 0.004 or len(pts) < 2:
            return
        t = max(1, int(round(th * self.s)))
        if alpha >= 0.996:
            cv2.polylines(self.img, [_ipts(pts)], closed, _col(color), t, _AA, _SHIFT)
            return
        x0, y0, x1, y1 = self._roi(pts, t + 2)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.polylines(mask, [_ipts(pts - (x0, y0))], closed, 255, t, _AA, _SHIFT)
        self._blend(mask, x0, y0, color, alpha)

    def fill_clipped(self, clip_pts: np.ndarray, draw):
        """Run ``draw(sub_canvas)`` on a copy of the ROI of clip_pts and keep it only inside the polygon."""
        x0, y0, x1, y1 = self._roi(clip_pts, 2)
        if x1 <= x0 or y1 <= y0:
            return
        sub = self.img[y0:y1, x0:x1]
        work = _Canvas(sub.copy(), self.s)
        draw(work, np.array([x0, y0], np.float64))
        mask = np.zeros(sub.shape[:2], np.uint8)
        cv2.fillPoly(mask, [_ipts(clip_pts - (x0, y0))], 255, _AA, _SHIFT)
        a = mask.astype(np.float32)[..., None] * np.float32(1 / 255.0)
        out = sub.astype(np.float32) * (1 - a) + work.img.astype(np.float32) * a
        self.img[y0:y1, x0:x1] = (out + 0.5).astype(np.uint8)


def _ellipse(cx, cy, rx, ry, n=16, rot=0.0):
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = c * x - s * y, s * x + c * y
    return cx + x, cy + y


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2x3) mapping src points to dst points (Umeyama, 2-D)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    a = np.sum(np.conj(zs - ms) * (zd - md)) / np.sum(np.abs(zs - ms) ** 2)
    t = md - a * ms
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


@functools.lru_cache(maxsize=8)
def _grid(size: int):
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(c[:, None], (size, size))


# ---------------------------------------------------------------------------------------------------
# head model / projection
# ---------------------------------------------------------------------------------------------------
class _Head:
    def __init__(self, p: dict, yaw: float, pitch: float):
        self.p = p
        self.W = p["W"]
        self.D = p["depth"]
        self.iw2 = 0.92 / (self.W * self.W)
        self.cy, self.sy = math.cos(yaw), math.sin(yaw)
        self.cp, self.sp = math.cos(pitch), math.sin(pitch)
        self.yc = 12.0  # rotation centre height
        self.sil_x = math.sqrt(self.cy ** 2 + (self.D / self.W) ** 2 * self.sy ** 2)
        self.sil_y = math.sqrt(self.cp ** 2 + (self.D / 70.0) ** 2 * self.sp ** 2)
        self.A = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def rot(self, x, y, dz=0.0):
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        z = self.D * np.sqrt(np.clip(1.0 - x * x * self.iw2 - ((y - 14.0) * (1.0 / 82.0)) ** 2, 0.02, 1.0)) + dz
        x1 = x * self.cy + z * self.sy
        z1 = -x * self.sy + z * self.cy
        y1 = self.yc + (y - self.yc) * self.cp - z1 * self.sp
        return x1, y1

    def _aff(self, x1, y1):
        A = self.A
        return np.stack([A[0, 0] * x1 + A[0, 1] * y1 + A[0, 2], A[1, 0] * x1 + A[1, 1] * y1 + A[1, 2]], -1)

    def P(self, x, y, dz=0.0) -> np.ndarray:
        """Surface point(s) -> canvas (N, 2)."""
        return self._aff(*self.rot(x, y, dz))

    def S(self, x, y) -> np.ndarray:
        """Silhouette point(s) -> canvas (N, 2)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        return self._aff(x * self.sil_x, self.yc + (y - self.yc) * self.sil_y)

    # head outline half-width as a function of y
    def half_width(self, y):
        p = self.p
        y = np.asarray(y, np.float64)
        yc, W = p["cheek_y"], self.W
        up = W * np.sqrt(np.clip(1.0 - ((y - yc) / p["crown"]) ** 2, 0.0, 1.0))
        t = np.clip((y - yc) / (p["chin_y"] - yc), 0.0, 1.0)
        jp = p["jaw_p"]
        cw = p["chin_w"]
        lo = cw + (W * (1.0 - p["jaw_taper"] * t) - cw) * (1.0 - t ** jp) ** (1.0 / jp)
        return np.where(y < yc, up, lo)

    def outline(self, n=44):
        """Closed face outline in face coordinates (x, y), clockwise from the crown."""
        p = self.p
        top = p["cheek_y"] - p["crown"]
        s = np.linspace(0.0, 1.0, n)
        ys = top + (p["chin_y"] - top) * (1 - np.cos(s * math.pi)) / 2
        ws = self.half_width(ys)
        cw = p["chin_w"]
        bx = np.linspace(cw, -cw, 7)[1:-1]
        by = p["chin_y"] + 0.35 * cw * (1 - (bx / max(cw, 1e-3)) ** 2) + 1.0
        x = np.concatenate([ws, bx, -ws[::-1]])
        y = np.concatenate([ys, by, ys[::-1]])
        return x, y


# ---------------------------------------------------------------------------------------------------
# per-image rendering
# ---------------------------------------------------------------------------------------------------
def _nuisance(identity: int, sample: int, seed: int, p: dict) -> dict:
    rng = np.random.default_rng([int(seed), int(identity), int(sample), 1])
    u = rng.uniform
    n: dict = {}
    n["yaw"] = math.radians(float(np.clip(rng.normal(0.0, 11.0), -30, 30)))
    n["pitch"] = math.radians(float(np.clip(rng.normal(0.0, 7.0), -18, 18)))
    n["lm_noise"] = rng.normal(0.0, 1.1, (5, 2))
    n["roll"] = math.radians(rng.normal(0.0, 3.0))
    n["scale"] = math.exp(rng.normal(0.0, 0.04))
    n["shift"] = rng.normal(0.0, 1.6, 2)
    n["smile"] = float(np.clip(rng.normal(0.2, 0.4), 0.0, 1.0))
    n["open"] = u(0.15, 1.0) if rng.random() < 0.25 else 0.0
    n["brow"] = float(np.clip(rng.normal(0.0, 0.5), -0.6, 1.2))
    eye = 1.0 - 0.35 * n["smile"] + rng.normal(0.0, 0.08)
    if rng.random() < 0.07:
        eye = u(0.0, 0.3)
    n["eye_open"] = float(np.clip(eye, 0.0, 1.15))
    n["gaze"] = rng.normal(0.0, 0.18, 2)
    n["age"] = float(np.clip(p["age"] + rng.normal(0.0, 0.08), 0.0, 1.0))
    ang = u(0, 2 * math.pi)
    n["light_dir"] = (math.cos(ang), math.sin(ang))
    n["light_g"] = u(0.0, 0.5)
    n["light_side"] = u(0.0, 0.45)
    n["light_i"] = math.exp(rng.normal(0.0, 0.2))
    n["cast"] = np.exp(rng.normal(0.0, 0.07, 3))
    n["gamma"] = math.exp(rng.normal(0.0, 0.12))
    n["bg"] = rng.uniform(0, 255, (3, 3, 3))
    n["bg_shapes"] = int(rng.integers(0, 4))
    n["bg_shape_params"] = rng.uniform(0, 1, (3, 8))
    n["hair_dv"] = rng.normal(0.0, 1.2)
    n["hair_dl"] = rng.normal(0.0, 1.0)
    n["hair_tint"] = np.exp(rng.normal(0.0, 0.05, 3))
    r = rng.random()
    n["glasses"] = rng.random() < p["glasses_rate"]
    n["sunglasses"] = (not n["glasses"]) and r < 0.05
    n["mask"] = rng.random() < 0.07
    n["mask_col"] = _col(
        [(170, 200, 228), (235, 235, 235), (40, 40, 45), (120, 160, 200), (210, 190, 200)][int(rng.integers(5))]
        * np.exp(rng.normal(0.0, 0.05, 3))
    )
    n["mask_top"] = u(-3.0, 3.0)
    n["occluder"] = rng.random() < 0.06
    n["occ"] = rng.uniform(0, 1, 8)
    n["blur"] = u(0.4, 1.5) if rng.random() < 0.35 else 0.0
    n["noise"] = u(0.0, 6.0)
    n["jpeg"] = int(rng.integers(30, 90)) if rng.random() < 0.3 else 0
    n["gray"] = rng.random() < 0.04
    n["noise_seed"] = rng.integers(0, 2 ** 32)
    return n


def _background(n: dict, size: int) -> np.ndarray:
    img = cv2.resize(n["bg"].astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    cv = _Canvas(img, size / SIZE)
    for k in range(n["bg_shapes"]):
        q = n["bg_shape_params"][k]
        cx, cy = q[0] * size, q[1] * size
        w, h = (0.1 + 0.5 * q[2]) * size, (0.1 + 0.5 * q[3]) * size
        col = q[4:7] * 255
        if q[7] < 0.5:
            pts = np.array([[cx - w, cy - h], [cx + w, cy - h], [cx + w, cy + h], [cx - w, cy + h]])
        else:
            pts = np.stack(_ellipse(cx, cy, w, h, 20), -1)
        cv.fill(pts, col, 0.5 + 0.5 * q[7])
    return img


def render(identity: int, sample: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Render image ``sample`` of synthetic ``identity``: an HxWx3 uint8 RGB aligned face crop."""
    p = identity_params(int(identity), int(seed))
    n = _nuisance(identity, sample, seed, p)
    sc = size / SIZE
    head = _Head(p, n["yaw"], n["pitch"])

    # --- alignment: project the 5 landmarks, add detector noise, fit to the reference (like an aligner)
    smile, mopen = n["smile"], n["open"]
    mw = p["mouth_w"] * (1.0 + 0.12 * smile)
    my = p["mouth_y"] - 1.5 * smile + 1.5 * mopen
    lx = np.array([-p["eye_dx"], p["eye_dx"], 0.0, -mw, mw])
    ly = np.array([0.0, 0.0, p["nose_y"], my - 2.0 * smile, my - 2.0 * smile])
    ldz = np.array([-2.0, -2.0, p["nose_pro"], 0.0, 0.0])
    lm = np.stack(head.rot(lx, ly, ldz), -1)
    F = _similarity(lm, REFERENCE_LANDMARKS + n["lm_noise"])
    # aligner jitter: residual roll and scale about the crop centre, plus shift
    c, s = math.cos(n["roll"]) * n["scale"], math.sin(n["roll"]) * n["scale"]
    R = np.array([[c, -s], [s, c]])
    centre = np.array([56.0, 62.0])
    A = np.empty((2, 3))
    A[:, :2] = R @ F[:, :2]
    A[:, 2] = R @ (F[:, 2] - centre) + centre + n["shift"]
    head.A = A * sc
    P, S = head.P, head.S

    img = _background(n, size)
    cv = _Canvas(img, sc)
    skin = p["skin"]
    age = n["age"]
    grey = float(np.clip((age - 0.45) * 1.6, 0.0, 0.9))
    hair = p["hair"] * n["hair_tint"]
    hair = hair * (1 - grey) + np.array([200.0, 200.0, 200.0]) * grey
    W = p["W"]
    style = p["style"]
    vol = max(0.5, p["hair_vol"] + n["hair_dv"])
    hl = p["hairline"] + n["hair_dl"] - p["recede"] * 0.5

    ox, oy = head.outline()
    top = p["cheek_y"] - p["crown"]
    # --- long hair behind the head
    if style == 1:
        k = ox * (1 + (vol + 4) / W)
        ys_back = np.linspace(top - vol, p["long_len"], 16)
        wb = head.half_width(np.minimum(ys_back, p["cheek_y"])) + vol + 4
        xb = np.concatenate([-wb, wb[::-1]])
        yb = np.concatenate([ys_back, ys_back[::-1]])
        cv.fill(S(xb, yb), hair * 0.85)
        del k
    # --- neck and shoulders
    nw = W * 0.62
    neck = S(np.array([-nw, nw, nw * 1.05, -nw * 1.05]), np.array([20.0, 20.0, 90.0, 90.0]))
    cv.fill(neck, skin * 0.78)
    # --- ears
    for side in (-1.0, 1.0):
        ex, ey = _ellipse(0.0, p["ear_y"], p["ear_w"], p["ear_h"], 14)
        x3 = side * (W - 1.0 + p["ear_w"] * 0.6) + ex
        pts = head._aff(x3 * head.cy + (-6.0) * head.sy, head.yc + (ey - head.yc) * head.cp)
        cv.fill(pts, skin * 0.9)
        cv.line(pts[3:10] if side > 0 else pts[[10, 11, 12, 13, 0, 1]], skin * 0.7, 1.0, 0.5)
    # --- face
    face = S(ox, oy)
    cv.fill(face, skin)
    # subtle chin/jaw shading line and cheek blush
    if p["blush"] > 0.02:
        for side in (-1.0, 1.0):
            bx, by = _ellipse(side * (p["eye_dx"] + 2), p["nose_y"] + 2, 7.0, 4.5, 12)
            cv.fill(P(bx, by), np.array([220.0, 90.0, 90.0]), p["blush"] * 0.6)
    # age: wrinkles
    wr = float(np.clip((age - 0.35) * 1.2, 0.0, 0.7))
    dark = skin * 0.55
    fw = wr * 0.6 + max(n["brow"], 0.0) * 0.25
    if fw > 0.03:
        for k in range(3):
            yy = p["brow_y"] - 6.0 - 3.5 * k - 2.0 * max(n["brow"], 0.0)
            if yy < hl + 3:
                continue
            xs = np.linspace(-14.0, 14.0, 8)
            cv.line(P(xs, yy - 1.5 * np.cos(xs / 14.0 * 1.5)), dark, 1.0, fw)
    nl = wr * 0.6 + 0.35 * smile
    if nl > 0.05:
        for side in (-1.0, 1.0):
            t = np.linspace(0.0, 1.0, 6)
            xs = side * (p["nose_w"] + 2.0 + (mw - p["nose_w"] + 1.5) * t ** 0.8)
            ys = p["nose_y"] + 0.5 + (my - p["nose_y"] + 2.0) * t
            cv.line(P(xs, ys), dark, 1.0, nl)
    # identity marks
    if len(p["moles"]):
        for mx, myy, mr, ma in p["moles"]:
            xx = mx * head.half_width(myy)
            cc = P(np.array([xx]), np.array([myy]))[0]
            ex, ey = _ellipse(cc[0], cc[1], mr * sc, mr * sc, 8)
            cv.fill(np.stack([ex, ey], -1), skin * 0.35, ma)
    if len(p["freckles"]):
        fp = P(p["freckles"][:, 0], p["freckles"][:, 1])
        ix = np.clip(fp[:, 0].astype(np.int64), 0, size - 1)
        iy = np.clip(fp[:, 1].astype(np.int64), 0, size - 1)
        f = 1.0 - p["freckle_a"]
        img[iy, ix] = (img[iy, ix] * np.array([f, f * 0.95, f * 0.9])).astype(np.uint8)
    # beard
    beard = p["beard"]
    if beard in (1, 2):
        t = np.linspace(0.0, 1.0, 9)
        yb0 = p["ear_y"] + p["beard_top"]
        xs_in = np.concatenate([-(W - 2) + (W - 2 - mw - 3) * t, (mw + 3) + (W - 2 - mw - 3) * t])
        ys_in = np.concatenate([yb0 + (p["nose_y"] + 3 - yb0) * t, p["nose_y"] + 3 + (yb0 - p["nose_y"] - 3) * t])
        ys_out = np.linspace(yb0, p["chin_y"], 12)
        wo = head.half_width(ys_out)
        inner = P(xs_in[::-1], ys_in[::-1])
        outer_r = S(wo, ys_out)
        outer_l = S(-wo[::-1], ys_out[::-1])
        chin = S(np.array([0.0]), np.array([p["chin_y"] + 1.5]))
        poly = np.concatenate([inner, outer_r, chin, outer_l])
        cv.fill(poly, hair * (0.8 if beard == 2 else 0.9), p["beard_a"])
    if beard == 3:
        gx, gy = _ellipse(0.0, (my + p["chin_y"]) / 2 + 2, mw * 0.55, (p["chin_y"] - my) / 2 + 1, 16)
        cv.fill(P(gx, gy), hair * 0.8, p["beard_a"])
    # --- nose
    lx_, ly_ = n["light_dir"]
    nose_y, nwid, npro = p["nose_y"], p["nose_w"], p["nose_pro"]
    sh_side = -1.0 if (lx_ * head.cy + 0.3 * head.sy) > 0 else 1.0
    t = np.linspace(0.0, 1.0, 7)
    bx = sh_side * (2.5 + 1.5 * t)
    by = -2.0 + (nose_y - 3.0) * t
    bridge = np.concatenate([P(bx, by, npro * t ** 2), P(sh_side * (nwid * 0.8) * np.ones(1), np.array([nose_y]), np.array([2.0])), P(sh_side * 1.0 * np.ones(2), np.array([nose_y - 2.0, 0.0]), np.array([npro * 0.8, 0.0]))])
    cv.fill(bridge, skin * 0.7, 0.25 + 0.3 * n["light_g"])
    for side in (-1.0, 1.0):
        t = np.linspace(0.0, 1.0, 6)
        ax = side * (nwid * (0.55 + 0.45 * np.sin(t * math.pi)))
        ay = nose_y - 4.5 + 5.5 * t
        cv.line(P(ax, ay, npro * 0.3 * np.ones(6)), skin * 0.6, 1.0, 0.55)
        ex, ey = _ellipse(side * nwid * 0.42, nose_y + 0.8, p["nostril"] * 1.5, p["nostril"], 10, rot=side * 0.3)
        cv.fill(P(ex, ey, npro * 0.55), skin * 0.3, 0.85)
    tx, ty = _ellipse(0.0, nose_y - 1.5, nwid * 0.35, 1.6, 10)
    cv.fill(P(tx, ty, npro * 0.95), np.minimum(skin * 1.12 + 10, 255), 0.35)
    # --- eyes
    ew, eh, ehl = p["ew"], p["eh"] * n["eye_open"], p["eh_lo"] * min(1.0, n["eye_open"] + 0.2)
    tt = np.linspace(-1.0, 1.0, 11)
    prof = (1.0 - tt ** 2) ** p["eye_pow"]
    for side in (-1.0, 1.0):
        cx = side * p["eye_dx"]
        tilt = p["eye_tilt"] * side
        xu = tt * ew
        yu = -eh * prof - tilt * xu * side
        yl = ehl * prof - tilt * xu * side
        ex = np.concatenate([xu, xu[::-1][1:-1]]) + cx
        ey = np.concatenate([yu, yl[::-1][1:-1]])
        eye_poly = P(ex, ey, -2.0)
        lid_col = skin * 0.5 * (1 - p["lid_dark"]) + np.array([20.0, 15.0, 15.0]) * p["lid_dark"]
        if eh > 0.6:
            cv.fill(eye_poly, np.array([236.0, 232.0, 226.0]) * 0.95)
            ir = p["iris_r"]
            gx = cx + n["gaze"][0] * ew * 0.5 + 0.35 * ew * math.sin(n["yaw"]) * 0
            gy = -0.15 * eh + n["gaze"][1] * eh * 0.3
            ic = P(np.array([gx]), np.array([gy]), -1.0)[0]
            rr = ir * math.hypot(head.A[0, 0], head.A[0, 1])

            def draw_iris(w: _Canvas, off, ic=ic, rr=rr):
                c0 = ic - off
                x_, y_ = _ellipse(c0[0], c0[1], rr * head.sil_x, rr, 16)
                w.fill(np.stack([x_, y_], -1), p["iris"])
                x_, y_ = _ellipse(c0[0], c0[1], rr * 0.45 * head.sil_x, rr * 0.45, 12)
                w.fill(np.stack([x_, y_], -1), (12, 10, 10))
                x_, y_ = _ellipse(c0[0] + rr * 0.35, c0[1] - rr * 0.35, rr * 0.18, rr * 0.18, 8)
                w.fill(np.stack([x_, y_], -1), (250, 250, 250), 0.8)

            cv.fill_clipped(eye_poly, draw_iris)
        # lids
        upper = eye_poly[:11]
        cv.line(upper, lid_col, 1.0 + 0.6 * p["lid_dark"], 0.9)
        crease = P(cx + tt[1:-1] * ew * 0.95, -eh * prof[1:-1] * 1.1 - 2.2 - 0.8 * p["eh"], -2.0)
        cv.line(crease, skin * 0.65, 1.0, 0.35)
        if eh > 0.6:
            cv.line(eye_poly[10:] if len(eye_poly) > 11 else eye_poly, skin * 0.6, 1.0, 0.3)
        if wr > 0.1 or smile > 0.5:
            a = wr * 0.6 + max(smile - 0.5, 0.0) * 0.5
            for k in (-1, 0, 1):
                x0 = cx + side * (ew + 1.5)
                cv.line(P(np.array([x0, x0 + side * 4.0]), np.array([k * 1.5, k * 2.5])), dark, 1.0, a)
    # --- eyebrows
    braise = n["brow"] * 2.5
    for side in (-1.0, 1.0):
        xi = side * (p["eye_dx"] - p["ew"] * p["brow_in"])
        xo = side * (p["eye_dx"] + p["ew"] * p["brow_out"])
        t = np.linspace(0.0, 1.0, 9)
        xs = xi + (xo - xi) * t
        ys = p["brow_y"] - braise - p["brow_arch"] * np.sin(t * math.pi * 0.85) ** 1.2 - p["brow_slope"] * t
        th = p["brow_th"] * (1.0 - 0.55 * t ** 1.5) + 0.4
        pts = np.concatenate([P(xs, ys - th / 2), P(xs[::-1], (ys + th / 2)[::-1])])
        cv.fill(pts, hair * 0.7 + skin * 0.08, p["brow_alpha"])
    # --- hair cap
    if style != 2 or True:
        yt = min(p["ear_y"] - 2.0 + p["sideburn"], p["cheek_y"] + 4)
        n_arc = 26
        ys_arc = np.linspace(yt, top, n_arc)
        w_arc = head.half_width(ys_arc)
        if style == 3:
            ang = np.linspace(0.0, math.pi, n_arc)
            bump = 1.0 + 0.05 * np.sin(p["curl_k"] * ang + p["curl_phase"])
        else:
            bump = 1.0
        ex_ = (W + vol) / W
        xr = w_arc * ex_ * bump
        yr = top + (ys_arc - top) * ex_ - vol * 0.4
        yr = ys_arc - vol * (1.0 - (ys_arc - top) / (yt - top)) * 1.0
        arc_x = np.concatenate([-xr, xr[::-1]])
        arc_y = np.concatenate([yr, yr[::-1]])
        arc_y = np.concatenate([ys_arc - vol * np.clip((yt - ys_arc) / (yt - top), 0, 1), (ys_arc - vol * np.clip((yt - ys_arc) / (yt - top), 0, 1))[::-1]])
        outer = S(arc_x, arc_y)
        # hairline across the forehead (right temple -> left temple)
        xs = np.linspace(0.88, -0.88, 15) * W
        r = np.abs(xs) / W
        yh = hl + p["hl_curve"] * r ** 2 - p["recede"] * np.exp(-(((r - 0.5) / 0.2) ** 2)) + p["part"] * xs / W
        if style == 4:
            yh = yh + 0.8 * np.sin(xs * 0.9 + p["curl_phase"])
        yh = np.minimum(yh, yt - 2)
        front = P(xs, yh, 1.0)
        w_t = head.half_width(np.array([yt]))[0]
        right_t = S(np.array([w_t * 0.99]), np.array([yt]))
        left_t = S(np.array([-w_t * 0.99]), np.array([yt]))
        side_r = P(np.array([w_t * 0.92]), np.array([yt]))
        side_l = P(np.array([-w_t * 0.92]), np.array([yt]))
        poly = np.concatenate([outer, right_t, side_r, front, side_l, left_t])
        cv.fill(poly, hair, 0.3 if style == 2 else 1.0)
        if style != 2:
            # a few strands for texture
            for k in range(5):
                xx = np.linspace(-0.6, 0.6, 5) * W + (k - 2) * 6.0
                yy = top + 10.0 + k * 0.0 + 6 * (xx / W) ** 2 + (hl - top - 12) * 0.5
                cv.line(P(xx, yy, 2.0), hair * 0.75 + 8, 1.0, 0.35)
    # --- mouth
    lip = p["lip"]
    t = np.linspace(-1.0, 1.0, 13)
    curve = 2.5 * smile * t ** 2
    yline = my - curve
    gap = 5.5 * mopen + 1.0 * mopen * smile
    up_th = p["lip_up"] * (1.0 - 0.25 * smile) * (1 - t ** 2) ** 0.6
    bow = p["bow"] * np.exp(-((np.abs(t) - 0.22) / 0.15) ** 2)
    lo_th = p["lip_lo"] * (1 - t ** 2) ** 0.7
    xs = mw * t
    up_top = P(xs, yline - gap * 0.3 - up_th - bow * 0.6)
    up_bot = P(xs, yline - gap * 0.3 + 0.2 * (1 - t ** 2))
    lo_top = P(xs, yline + gap * 0.7 * (1 - t ** 2) ** 0.5)
    lo_bot = P(xs, yline + gap * 0.7 * (1 - t ** 2) ** 0.5 + lo_th)
    if mopen > 0.05:
        cv.fill(np.concatenate([up_bot, lo_top[::-1]]), (45, 20, 22))
        if mopen > 0.3:
            teeth_b = P(xs[2:-2], yline[2:-2] - gap * 0.3 + gap * 0.35 * (1 - t[2:-2] ** 2))
            cv.fill(np.concatenate([up_bot[2:-2], teeth_b[::-1]]), (225, 220, 205))
    cv.fill(np.concatenate([up_top, up_bot[::-1]]), lip * 0.92)
    cv.fill(np.concatenate([lo_top, lo_bot[::-1]]), lip)
    cv.line(up_bot, lip * 0.45, 1.0, 0.8)
    if beard == 4 or beard == 2:
        t2 = np.linspace(-1.0, 1.0, 11)
        mx = (mw + 2.0) * t2
        mtop = nose_y + 3.0 + 0.5 * np.abs(t2)
        mbot = yline[::1][np.linspace(0, 12, 11).astype(int)] - gap * 0.3 - p["lip_up"] * 0.6 + 3.0 * np.abs(t2) ** 2
        cv.fill(np.concatenate([P(mx, mtop), P(mx[::-1], mbot[::-1])]), hair * 0.75, p["beard_a"])
    # --- face mask
    if n["mask"]:
        yt_m = nose_y - 11.0 + n["mask_top"]
        xs = np.linspace(-1.0, 1.0, 13) * head.half_width(np.array([yt_m]))[0]
        topl = P(xs, yt_m + 3.0 * (xs / W) ** 2 - 2.0 * np.exp(-((xs / 6.0) ** 2)), 6.0)
        ys_o = np.linspace(yt_m + 2, p["chin_y"] + 2, 10)
        wo = head.half_width(np.minimum(ys_o, p["chin_y"])) * 0.98
        poly = np.concatenate([topl, S(wo, ys_o), S(-wo[::-1], ys_o[::-1])])
        cv.fill(poly, n["mask_col"])
        for k in (1, 2, 3):
            yy = yt_m + k * (p["chin_y"] - yt_m) / 4.5
            xs2 = np.linspace(-0.8, 0.8, 7) * head.half_width(np.array([yy]))[0]
            cv.line(P(xs2, yy + 0 * xs2, 6.0), np.array(n["mask_col"]) * 0.75, 1.0, 0.45)
        for side in (-1.0, 1.0):
            a0 = topl[0 if side < 0 else -1]
            a1 = S(np.array([side * W * 1.02]), np.array([p["ear_y"] - 2]))[0]
            cv.line(np.stack([a0, a1]), np.array(n["mask_col"]) * 0.9, 1.0)
    # --- glasses / sunglasses
    if n["glasses"] or n["sunglasses"]:
        tt2 = np.linspace(0.0, 2 * math.pi, 20, endpoint=False)
        pw = 2.0 / p["lens_pow"]
        c_, s_ = np.cos(tt2), np.sin(tt2)
        lxs = np.sign(c_) * np.abs(c_) ** pw * ew * p["lens_w"]
        lys = np.sign(s_) * np.abs(s_) ** pw * ew * p["lens_h"] + 0.8
        frame = p["frame"] if n["glasses"] else (20, 20, 20)
        th = p["frame_th"] if n["glasses"] else 2
        lenses = []
        for side in (-1.0, 1.0):
            lens = P(side * p["eye_dx"] + lxs, lys, 7.0)
            lenses.append(lens)
            if n["sunglasses"]:
                cv.fill(lens, (18, 20, 24), 0.93)
            else:
                cv.fill(lens, (200, 215, 230), 0.08)
            cv.line(lens, frame, th, 1.0, closed=True)
            # temple arm to the ear
            a0 = P(np.array([side * (p["eye_dx"] + ew * p["lens_w"])]), np.array([-1.0]), np.array([7.0]))[0]
            a1 = S(np.array([side * W]), np.array([p["ear_y"] - 5]))[0]
            cv.line(np.stack([a0, a1]), frame, th)
        inner_r = P(np.array([-p["eye_dx"] + ew * p["lens_w"], 0.0, p["eye_dx"] - ew * p["lens_w"]]),
                    np.array([-1.0, -2.5, -1.0]), np.array([7.0, 9.0, 7.0]))
        cv.line(inner_r, frame, th)
    # --- random occluder (hand, object, microphone ...)
    if n["occluder"]:
        q = n["occ"]
        side = -1.0 if q[0] < 0.5 else 1.0
        cx = 56 * sc + side * (30 + 25 * q[1]) * sc
        cy = (50 + 50 * q[2]) * sc
        col = skin * (0.8 + 0.3 * q[3]) if q[4] < 0.5 else q[5:8] * 255
        ex, ey = _ellipse(cx, cy, (12 + 14 * q[3]) * sc, (18 + 20 * q[6]) * sc, 18, rot=q[7] * 3)
        cv.fill(np.stack([ex, ey], -1), col)

    # --- lighting, camera
    f = img.astype(np.float32)
    gx, gy = _grid(size)
    fc = head._aff(np.array([0.0]), np.array([20.0]))[0] / size * 2.0 - 1.0
    uu = np.clip((gx - np.float32(fc[0])) * np.float32(size / (2.0 * W * sc * head.sil_x * 1.05)), -1.3, 1.3)
    vv = gy - np.float32(fc[1])
    lxd, lyd = n["light_dir"]
    light = 1.0 + np.float32(n["light_g"]) * (np.float32(lxd) * uu + np.float32(lyd * 0.6) * vv)
    light -= np.float32(n["light_side"]) * np.square(np.maximum(-np.float32(lxd) * uu, 0.0))
    light *= np.float32(n["light_i"])
    f *= light[..., None]
    f *= (n["cast"].astype(np.float32))[None, None, :]
    if abs(n["gamma"] - 1.0) > 0.02:
        f = np.clip(f, 0.0, 255.0)
        f = 255.0 * (f * np.float32(1.0 / 255.0)) ** np.float32(n["gamma"])
    if n["blur"] > 0:
        f = cv2.GaussianBlur(f, (0, 0), n["blur"] * sc)
    if n["noise"] > 0.3:
        nrng = np.random.default_rng(n["noise_seed"])
        f += nrng.standard_normal(f.shape, dtype=np.float32) * np.float32(n["noise"])
    if n["gray"]:
        g = f @ np.array([0.299, 0.587, 0.114], np.float32)
        f = np.repeat(g[..., None], 3, axis=2)
    out = np.clip(f + 0.5, 0.0, 255.0).astype(np.uint8)
    if n["jpeg"]:
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, n["jpeg"]])
        out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


# ---------------------------------------------------------------------------------------------------
# batch generation
# ---------------------------------------------------------------------------------------------------
def _render_chunk(args) -> np.ndarray:
    ids, samples, seed, size = args
    out = np.empty((len(ids), size, size, 3), np.uint8)
    for k, (i, s) in enumerate(zip(ids, samples)):
        out[k] = render(int(i), int(s), seed, size)
    return out


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _default_workers(n_images: int) -> int:
    if n_images < 3000:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 16))


def generate(num_identities: int, images_per_identity: int, seed: int = 0, first_identity: int = 0,
             progress: bool = False, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N,112,112,3], labels int64 [N] in 0..num_identities-1); identities used are
    first_identity .. first_identity+num_identities-1 (so train/test sets can use disjoint identity ranges).

    Images are ordered identity-major (all samples of the first identity, then the next ...).
    ``workers``: processes to render with (None: 1 for small sets, all available cores for >= 3000
    images).  The result is byte-identical whatever the worker count.
    """
    if num_identities < 0 or images_per_identity < 0:
        raise ValueError("num_identities and images_per_identity must be >= 0")
    n = num_identities * images_per_identity
    labels = np.repeat(np.arange(num_identities, dtype=np.int64), images_per_identity)
    ids = labels + int(first_identity)
    samples = np.tile(np.arange(images_per_identity, dtype=np.int64), num_identities)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    if workers is None:
        workers = _default_workers(n)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc="synthetic faces", dynamic_ncols=True)
    chunk = 256
    starts = list(range(0, n, chunk))
    jobs = [(ids[s:s + chunk], samples[s:s + chunk], int(seed), SIZE) for s in starts]
    try:
        if workers <= 1 or len(jobs) <= 1:
            for s, job in zip(starts, jobs):
                images[s:s + len(job[0])] = _render_chunk(job)
                if bar is not None:
                    bar.update(len(job[0]))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # safe even when torch/threads are live in the parent
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for s, res in zip(starts, pool.imap(_render_chunk, jobs)):
                    images[s:s + len(res)] = res
                    if bar is not None:
                        bar.update(len(res))
    finally:
        if bar is not None:
            bar.close()
    return images, labels


def write_image_folder(dst: str | Path, num_identities: int, images_per_identity: int, seed: int = 0,
                       first_identity: int = 0, progress: bool = False, workers: int | None = None) -> int:
    """Writes an ImageFolder dst/<id_%05d>/<sample_%03d>.png, returns the number of images written.

    The class folder name is the global identity number (first_identity + k)."""
    from PIL import Image

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = 0
    block = max(1, 2048 // max(1, images_per_identity))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_identities * images_per_identity, unit="img", desc="writing synthetic faces",
                   dynamic_ncols=True)
    try:
        for b0 in range(0, num_identities, block):
            nb = min(block, num_identities - b0)
            imgs, labels = generate(nb, images_per_identity, seed, first_identity + b0, workers=workers)
            for k in range(len(imgs)):
                ident = first_identity + b0 + int(labels[k])
                folder = dst / f"id_{ident:05d}"
                folder.mkdir(exist_ok=True)
                Image.fromarray(imgs[k]).save(folder / f"sample_{k % images_per_identity:03d}.png")
                written += 1
            if bar is not None:
                bar.update(len(imgs))
    finally:
        if bar is not None:
            bar.close()
    return written
