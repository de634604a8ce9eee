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
    if isinstance(c, tuple):
        return c
    return tuple(np.clip(np.asarray(c, np.float64), 0.0, 255.0).tolist())


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


def _mix(over, color, a: float) -> np.ndarray:
    """Colour of ``color`` painted with opacity ``a`` over a known flat colour ``over``."""
    return np.asarray(over, np.float64) * (1.0 - a) + np.asarray(color, np.float64) * a


class _Canvas:
    def __init__(self, img: np.ndarray, scale: float):
        self.img = img
        self.s = scale

    def fill(self, pts, color):
        cv2.fillPoly(self.img, [_ipts(pts)], _col(color), _AA, _SHIFT)

    def fill_many(self, polys, color):
        cv2.fillPoly(self.img, [_ipts(q) for q in polys], _col(color), _AA, _SHIFT)

    def line(self, pts, color, th: float = 1.0, closed: bool = False):
        cv2.polylines(self.img, [_ipts(pts)], closed, _col(color), max(1, int(round(th * self.s))), _AA, _SHIFT)

    def lines(self, polys, color, th: float = 1.0, closed: bool = False):
        cv2.polylines(self.img, [_ipts(q) for q in polys], closed, _col(color), max(1, int(round(th * self.s))),
                      _AA, _SHIFT)


_CIRC = {k: (np.cos(np.linspace(0.0, 2 * math.pi, k, endpoint=False)),
             np.sin(np.linspace(0.0, 2 * math.pi, k, endpoint=False))) for k in (8, 10, 12, 14, 16, 20)}
_T = {k: np.linspace(0.0, 1.0, k) for k in (5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 26)}
_S = {k: np.linspace(-1.0, 1.0, k) for k in (5, 7, 8, 11, 13, 15)}


def _ellipse(cx, cy, rx, ry, n=16, rot=0.0):
    c, s = _CIRC[n]
    x, y = rx * c, ry * s
    if rot:
        cr, sr = math.cos(rot), math.sin(rot)
        x, y = cr * x - sr * y, sr * x + cr * y
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
    return c[None, :], c[:, None]


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of N(0, 1) float32 samples; each image reads its sensor noise at its own offset
    (drawing fresh normals per image costs more than the whole drawing)."""
    return np.random.default_rng(0x5EED).standard_normal(1 << 20, dtype=np.float32)


@functools.lru_cache(maxsize=256)
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# head model / projection
# ---------------------------------------------------------------------------------------------------
class _Head:
    """A face drawn on the front of an ellipsoidal head, rotated (yaw, pitch) and projected orthographically.

    ``P`` maps points on the face surface (x, y, extra depth dz) to the canvas; ``S`` maps points of the
    head silhouette (outline, hair outline) which stays centred while surface features shift with yaw."""

    YC = 12.0  # height of the rotation centre

    def __init__(self, p: dict, yaw: float, pitch: float):
        self.p = p
        self.W = p["W"]
        self.D = p["depth"]
        self.iw2 = 0.92 / (self.W * self.W)
        self.cy, self.sy = math.cos(yaw), math.sin(yaw)
        self.cp, self.sp = math.cos(pitch), math.sin(pitch)
        self.sil_x = math.sqrt(self.cy ** 2 + (self.D / self.W) ** 2 * self.sy ** 2)
        self.sil_y = math.sqrt(self.cp ** 2 + (self.D / 70.0) ** 2 * self.sp ** 2)
        self.set_affine(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    def set_affine(self, A: np.ndarray) -> None:
        self.A = A
        cy, sy, cp, sp, yc = self.cy, self.sy, self.cp, self.sp, self.YC
        # rotated: x1 = x cy + z sy ; y1 = yc (1 - cp) + y cp + x sy sp - z cy sp
        R = np.array([[cy, 0.0, sy, 0.0], [sy * sp, cp, -cy * sp, yc * (1.0 - cp)], [0.0, 0.0, 0.0, 1.0]])
        self.MP = (A @ R)[:, :3].T.copy(), (A @ R)[:, 3].copy()
        Rs = np.array([[self.sil_x, 0.0, 0.0], [0.0, self.sil_y, yc * (1.0 - self.sil_y)], [0.0, 0.0, 1.0]])
        self.MS = (A @ Rs)[:, :2].T.copy(), (A @ Rs)[:, 2].copy()

    def P(self, x, y, dz=0.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        t = 1.0 - x * x * self.iw2 - (y - 14.0) ** 2 * (1.0 / 6724.0)
        z = self.D * np.sqrt(np.maximum(t, 0.02)) + dz
        M, b = self.MP
        return np.stack([x, y, z], -1) @ M + b

    def Pn(self, parts) -> list:
        """Project several (x, y, dz) point sets in one go; returns the list of (N_i, 2) arrays."""
        lens = [len(a) for a, _, _ in parts]
        d = [np.full(k, c, np.float64) if np.ndim(c) == 0 else c for k, (_, _, c) in zip(lens, parts)]
        pts = self.P(np.concatenate([a for a, _, _ in parts]), np.concatenate([b for _, b, _ in parts]),
                     np.concatenate(d))
        out, i = [], 0
        for k in lens:
            out.append(pts[i:i + k])
            i += k
        return out

    def S(self, x, y) -> np.ndarray:
        M, b = self.MS
        return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], -1) @ M + b

    def half_width(self, y):
        p = self.p
        y = np.asarray(y, np.float64)
        yc, W = p["cheek_y"], self.W
        up = W * np.sqrt(np.maximum(1.0 - ((y - yc) / p["crown"]) ** 2, 0.0))
        t = np.clip((y - yc) / (p["chin_y"] - yc), 0.0, 1.0)
        jp = p["jaw_p"]
        cw = p["chin_w"]
        lo = cw + (W * (1.0 - p["jaw_taper"] * t) - cw) * (1.0 - t ** jp) ** (1.0 / jp)
        return np.where(y < yc, up, lo)

    def outline(self):
        """Closed face outline in face coordinates (x, y), from the crown down the right side and back."""
        p = self.p
        top = p["cheek_y"] - p["crown"]
        ys = top + (p["chin_y"] - top) * _OUT_S
        ws = self.half_width(ys)
        cw = p["chin_w"]
        bx = cw * _CHIN_S
        by = p["chin_y"] + 0.35 * cw * (1 - _CHIN_S ** 2) + 1.0
        x = np.concatenate([ws, bx, -ws[::-1]])
        y = np.concatenate([ys, by, ys[::-1]])
        return x, y


_OUT_S = (1 - np.cos(np.linspace(0.0, 1.0, 40) * math.pi)) / 2
_CHIN_S = np.linspace(1.0, -1.0, 7)[1:-1]


@functools.lru_cache(maxsize=4096)
def _geometry(identity: int, seed: int) -> dict:
    """Pose-independent outline geometry of an identity (cached; pure function of the parameters)."""
    p = identity_params(identity, seed)
    h = _Head(p, 0.0, 0.0)
    top = p["cheek_y"] - p["crown"]
    yt = min(p["ear_y"] - 2.0 + p["sideburn"], p["cheek_y"] + 4)
    ys_arc = yt + (top - yt) * _T[26]
    yb0 = p["ear_y"] + p["beard_top"]
    ys_out = yb0 + (p["chin_y"] - yb0) * _T[12]
    mo = p["moles"]
    return {
        "outline": h.outline(),
        "yt": yt,
        "ys_arc": ys_arc,
        "w_arc": h.half_width(ys_arc),
        "w_t": float(h.half_width(np.array([yt]))[0]),
        "beard_out": (ys_out, h.half_width(ys_out)),
        "moles_x": mo[:, 0] * h.half_width(mo[:, 1]) if len(mo) else None,
    }


# ---------------------------------------------------------------------------------------------------
# per-image rendering
# ---------------------------------------------------------------------------------------------------
_MASK_COLS = np.array([(170, 200, 228), (235, 235, 235), (40, 40, 45), (120, 160, 200), (210, 190, 200)], float)


def _nuisance(identity: int, sample: int, seed: int, p: dict) -> dict:
    rng = np.random.default_rng([int(seed), int(identity), int(sample), 1])
    r = rng.random(40)
    nrm = rng.standard_normal(64)
    ri = iter(r[16:])

    def u(lo=0.0, hi=1.0):
        return lo + (hi - lo) * next(ri)
    n: dict = {}
    n["yaw"] = math.radians(min(max(9.0 * nrm[0], -30.0), 30.0))
    n["pitch"] = math.radians(min(max(7.0 * nrm[1], -18.0), 18.0))
    n["lm_noise"] = 0.8 * nrm[16:26].reshape(5, 2)
    n["roll"] = math.radians(2.5 * nrm[2])
    n["scale"] = math.exp(0.04 * nrm[3])
    n["shift"] = 1.2 * nrm[4:6]
    n["smile"] = min(max(0.2 + 0.4 * nrm[6], 0.0), 1.0)
    n["open"] = 0.15 + 0.85 * r[0] if r[1] < 0.25 else 0.0
    n["brow"] = min(max(0.5 * nrm[7], -0.6), 1.2)
    eye = 1.0 - 0.35 * n["smile"] + 0.08 * nrm[8]
    if r[2] < 0.07:
        eye = 0.3 * r[3]
    n["eye_open"] = min(max(eye, 0.0), 1.15)
    n["gaze"] = 0.18 * nrm[9:11]
    n["age"] = min(max(p["age"] + 0.08 * nrm[11], 0.0), 1.0)
    ang = 2 * math.pi * r[4]
    n["light_dir"] = (math.cos(ang), math.sin(ang))
    n["light_g"] = 0.35 * r[5]
    n["light_side"] = 0.3 * r[6]
    n["light_i"] = math.exp(0.15 * nrm[12])
    n["cast"] = np.exp(0.05 * nrm[26:29]).astype(np.float32)
    n["gamma"] = math.exp(0.12 * nrm[13])
    sat = u(0, 0.6)
    base = u(25, 235) * (1 - sat) + 255.0 * sat * r[37:40]
    n["bg"] = np.clip(base + 30.0 * nrm[29:56].reshape(3, 3, 3), 0, 255)
    n["bg_shapes"] = int(4 * u())
    n["bg_shape_params"] = rng.random((3, 8))
    n["hair_dv"] = 1.2 * nrm[14]
    n["hair_dl"] = 1.0 * nrm[15]
    n["hair_tint"] = np.exp(0.05 * nrm[56:59])
    n["glasses"] = r[7] < p["glasses_rate"]
    n["sunglasses"] = (not n["glasses"]) and r[8] < 0.05
    n["mask"] = r[9] < 0.07
    n["mask_col"] = _MASK_COLS[int(r[10] * 5)] * np.exp(0.05 * nrm[59:62])
    n["mask_top"] = u(-3.0, 3.0)
    n["occluder"] = r[11] < 0.06
    n["occ"] = n["bg_shape_params"][2]
    n["blur"] = u(0.4, 1.5) if r[12] < 0.35 else 0.0
    n["noise"] = 6.0 * r[13]
    n["jpeg"] = int(u(30, 90)) if r[14] < 0.3 else 0
    n["gray"] = r[15] < 0.04
    n["noise_off"] = u()
    return n


def _background(n: dict, size: int) -> np.ndarray:
    img = cv2.resize(n["bg"].astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    cv = _Canvas(img, size / SIZE)
    for k in range(n["bg_shapes"]):
        q = n["bg_shape_params"][k]
        cx, cy = q[0] * size, q[1] * size
        w, h = (0.1 + 0.5 * q[2]) * size, (0.1 + 0.5 * q[3]) * size
        col = n["bg"][k, k] * 0.5 + q[4:7] * 128
        if q[7] < 0.5:
            pts = np.array([[cx - w, cy - h], [cx + w, cy - h], [cx + w, cy + h], [cx - w, cy + h]])
        else:
            pts = np.stack(_ellipse(cx, cy, w, h, 20), -1)
        cv.fill(pts, col)
    return img


def render(identity: int, sample: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Render image ``sample`` of synthetic ``identity``: an HxWx3 uint8 RGB aligned face crop."""
    identity, sample, seed, size = int(identity), int(sample), int(seed), int(size)
    if sample < 0:
        raise ValueError("sample must be a non-negative integer")
    p = identity_params(identity, seed)
    n = _nuisance(identity, sample, seed, p)
    sc = size / SIZE
    head = _Head(p, n["yaw"], n["pitch"])

    # --- alignment: project the 5 landmarks, add detector noise, fit to the reference like an aligner
    smile, mopen = n["smile"], n["open"]
    mw = p["mouth_w"] * (1.0 + 0.12 * smile)
    my = p["mouth_y"] - 1.5 * smile + 1.5 * mopen
    lm = head.P(np.array([-p["eye_dx"], p["eye_dx"], 0.0, -mw, mw]),
                np.array([0.0, 0.0, p["nose_y"], my - 2.0 * smile, my - 2.0 * smile]),
                np.array([-2.0, -2.0, p["nose_pro"], 0.0, 0.0]))
    F = _similarity(lm, REFERENCE_LANDMARKS + n["lm_noise"])
    # aligner jitter: residual roll and scale about the crop centre, plus shift
    c, s = math.cos(n["roll"]) * n["scale"], math.sin(n["roll"]) * n["scale"]
    R = np.array([[c, -s], [s, c]])
    centre = np.array([56.0, 62.0])
    A = np.empty((2, 3))
    A[:, :2] = R @ F[:, :2]
    A[:, 2] = R @ (F[:, 2] - centre) + centre + n["shift"]
    head.set_affine(A * sc)
    P, S = head.P, head.S

    img = _background(n, size)
    cv = _Canvas(img, sc)
    skin = p["skin"]
    age = n["age"]
    grey = min(max((age - 0.45) * 1.6, 0.0), 0.9)
    hair = p["hair"] * n["hair_tint"]
    hair = hair * (1 - grey) + 200.0 * grey
    W = p["W"]
    style = p["style"]
    vol = max(0.5, p["hair_vol"] + n["hair_dv"])
    hl = p["hairline"] + n["hair_dl"] - p["recede"] * 0.5
    g = _geometry(identity, seed)
    ox, oy = g["outline"]
    top = p["cheek_y"] - p["crown"]
    ew = p["ew"]
    nose_y, nwid, npro = p["nose_y"], p["nose_w"], p["nose_pro"]
    dark = skin * 0.55

    # --- long hair behind the head
    if style == 1:
        ys_back = top - vol + (p["long_len"] - top + vol) * _T[12]
        wb = head.half_width(np.minimum(ys_back, p["cheek_y"])) + vol + 4
        cv.fill(S(np.concatenate([-wb, wb[::-1]]), np.concatenate([ys_back, ys_back[::-1]])), hair * 0.85)
    # --- neck
    nw = W * 0.62
    cv.fill(S(np.array([-nw, nw, nw * 1.05, -nw * 1.05]), np.array([20.0, 20.0, 90.0, 90.0])), skin * 0.78)
    # --- ears (pinned to the silhouette sides, slightly behind)
    ex, ey = _ellipse(0.0, p["ear_y"], p["ear_w"], p["ear_h"], 14)
    ears = []
    for side in (-1.0, 1.0):
        x3 = side * (W - 1.0 + p["ear_w"] * 0.6) + ex
        ears.append(head.S(x3 * head.cy / head.sil_x - 6.0 * head.sy / head.sil_x, ey))
    cv.fill_many(ears, skin * 0.9)
    cv.lines([ears[0][[10, 11, 12, 13, 0, 1]], ears[1][3:10]], skin * 0.72)
    # --- face
    cv.fill(S(ox, oy), skin)
    if p["blush"] > 0.02:
        bx, by = _ellipse(p["eye_dx"] + 2.0, nose_y + 2.0, 7.0, 4.5, 12)
        cv.fill_many([P(bx, by), P(-bx, by)], _mix(skin, (220, 90, 90), p["blush"] * 0.5))

    # --- eyes (drawn first on the bare face so the iris can be clipped by a skin ring)
    eye_open = n["eye_open"]
    eh = p["eh"] * eye_open
    ehl = p["eh_lo"] * min(1.0, eye_open + 0.2)
    tt = _S[11]
    prof = (1.0 - tt ** 2) ** p["eye_pow"]
    lid_col = skin * 0.5 * (1 - p["lid_dark"]) + 18.0 * p["lid_dark"]
    ir = p["iris_r"]
    gx = n["gaze"][0] * ew * 0.5
    gy = -0.15 * eh + n["gaze"][1] * eh * 0.3
    tilt = p["eye_tilt"]
    xu = tt * ew
    yu = -eh * prof - tilt * xu
    yl = ehl * prof - tilt * xu
    ex_rel = np.concatenate([xu, xu[-2:0:-1]])
    ey_rel = np.concatenate([yu, yl[-2:0:-1]])
    cr_x = tt[1:-1] * ew * 0.95
    cr_y = -eh * prof[1:-1] * 1.1 - 2.2 - 0.8 * p["eh"] - tilt * cr_x
    irx, iry = _ellipse(gx, gy, ir, ir, 16)
    pux, puy = _ellipse(gx, gy, ir * 0.45, ir * 0.45, 10)
    hx, hy = _ellipse(gx + ir * 0.3, gy - ir * 0.35, ir * 0.17, ir * 0.17, 8)
    rx, ry = _ellipse(0.0, gy * 0.5, ew * 1.25, max(ir + abs(gy) + 1.5, eh + 1.0) * 1.5, 16)
    parts = []
    for side in (-1.0, 1.0):
        cx = side * p["eye_dx"]
        parts += [(ex_rel + cx, ey_rel, -2.0), (cr_x + cx, cr_y, -2.0), (irx + cx, iry, -1.0),
                  (pux + cx, puy, -1.0), (hx + cx, hy, -0.5), (rx + cx, ry, -2.0)]
    pr = head.Pn(parts)
    eyes, creases = [pr[0], pr[6]], [pr[1], pr[7]]
    if eh > 0.6:
        cv.fill_many(eyes, (226, 221, 214))
        # iris + pupil + highlight, then a skin ring (outer ellipse minus the eye opening) clips them
        cv.fill_many([pr[2], pr[8]], p["iris"])
        cv.fill_many([pr[3], pr[9]], (12, 10, 10))
        cv.fill_many([pr[4], pr[10]], (245, 245, 245))
        cv.fill_many([pr[5], pr[0], pr[11], pr[6]], skin)
        cv.lines([e[10:] for e in eyes], _mix(skin, skin * 0.6, 0.35))
    cv.lines(creases, _mix(skin, skin * 0.65, 0.4))
    cv.lines([e[:11] for e in eyes], lid_col, 1.0 + 0.6 * p["lid_dark"])

    # --- age: wrinkles; crow's feet
    wr = min(max((age - 0.35) * 1.2, 0.0), 0.7)
    fw = wr * 0.6 + max(n["brow"], 0.0) * 0.25
    if fw > 0.03:
        xs = 14.0 * _S[8]
        bend = 1.5 * np.cos(xs / 14.0 * 1.5)
        fl = []
        for k in range(3):
            yy = p["brow_y"] - 6.0 - 3.5 * k - 2.0 * max(n["brow"], 0.0)
            if yy > hl + 3:
                fl.append(P(xs, yy - bend))
        if fl:
            cv.lines(fl, _mix(skin, dark, fw))
    nl = wr * 0.6 + 0.35 * smile
    if nl > 0.05:
        t = _T[6]
        xs = nwid + 2.0 + (mw - nwid + 1.5) * t ** 0.8
        ys = nose_y + 0.5 + (my - nose_y + 2.0) * t
        cv.lines([P(xs, ys), P(-xs, ys)], _mix(skin, dark, nl))
    cf = wr * 0.6 + max(smile - 0.5, 0.0) * 0.5
    if cf > 0.05:
        segs = []
        for side in (-1.0, 1.0):
            x0 = side * (p["eye_dx"] + ew + 1.5)
            for k in (-1, 0, 1):
                segs.append(P(np.array([x0, x0 + side * 4.0]), np.array([k * 1.5, k * 2.5])))
        cv.lines(segs, _mix(skin, dark, cf))
    # --- identity marks
    if len(p["moles"]):
        mo = p["moles"]
        xx = g["moles_x"]
        cc = P(xx, mo[:, 1])
        for (px, py), (_, _, mr, ma) in zip(cc, mo):
            ex_, ey_ = _ellipse(px, py, mr * sc, mr * sc, 8)
            cv.fill(np.stack([ex_, ey_], -1), _mix(skin, skin * 0.35, ma))
    if len(p["freckles"]):
        fp = P(p["freckles"][:, 0], p["freckles"][:, 1])
        ix = np.clip(fp[:, 0].astype(np.int64), 0, size - 1)
        iy = np.clip(fp[:, 1].astype(np.int64), 0, size - 1)
        f = 1.0 - p["freckle_a"]
        img[iy, ix] = (img[iy, ix] * np.array([f, f * 0.95, f * 0.9])).astype(np.uint8)
    # --- beard
    beard = p["beard"]
    bcol = _mix(skin, hair * 0.8, p["beard_a"])
    if beard in (1, 2):
        t = _T[9]
        yb0 = p["ear_y"] + p["beard_top"]
        span = W - 2.0 - mw - 3.0
        # inner edge: right sideburn -> under the nose -> left sideburn; outer edge: down the left jaw
        # line, round the chin, up the right one
        xs_in = np.concatenate([(W - 2.0) - span * t, -(mw + 3.0) - span * t])
        ys_in = np.concatenate([yb0 + (nose_y + 3.0 - yb0) * t, nose_y + 3.0 + (yb0 - nose_y - 3.0) * t])
        ys_out, wo = g["beard_out"]
        poly = np.concatenate([P(xs_in, ys_in), S(-wo, ys_out), S(np.array([0.0]), np.array([p["chin_y"] + 1.5])),
                               S(wo[::-1], ys_out[::-1])])
        cv.fill(poly, bcol)
    elif beard == 3:
        gx_, gy_ = _ellipse(0.0, (my + p["chin_y"]) / 2 + 2, mw * 0.55, (p["chin_y"] - my) / 2 + 1, 16)
        cv.fill(P(gx_, gy_), bcol)
    # --- nose
    lxd, lyd = n["light_dir"]
    sh_side = -1.0 if (lxd * head.cy + 0.3 * head.sy) > 0 else 1.0
    t = _T[7]
    ta = _T[6]
    ax = nwid * (0.55 + 0.45 * np.sin(ta * math.pi))
    ay = nose_y - 4.5 + 5.5 * ta
    nx_, ny_ = _ellipse(nwid * 0.42, nose_y + 0.8, p["nostril"] * 1.4, p["nostril"] * 0.9, 10, rot=0.3)
    tx, ty = _ellipse(0.0, nose_y - 1.5, nwid * 0.35, 1.6, 10)
    pr = head.Pn([
        (np.concatenate([sh_side * (2.5 + 1.5 * t), [sh_side * nwid * 0.8, sh_side, sh_side]]),
         np.concatenate([-2.0 + (nose_y - 3.0) * t, [nose_y, nose_y - 2.0, 0.0]]),
         np.concatenate([npro * t ** 2, [2.0, npro * 0.8, 0.0]])),
        (ax, ay, npro * 0.3), (-ax, ay, npro * 0.3),
        (nx_, ny_, npro * 0.55), (-nx_, ny_, npro * 0.55),
        (tx, ty, npro * 0.95),
    ])
    cv.fill(pr[0], _mix(skin, skin * 0.7, 0.2 + 0.3 * n["light_g"]))
    cv.lines(pr[1:3], _mix(skin, skin * 0.6, 0.55))
    cv.fill_many(pr[3:5], _mix(skin, skin * 0.3, 0.7))
    cv.fill(pr[5], _mix(skin, np.minimum(skin * 1.12 + 10, 255), 0.35))
    # --- eyebrows
    braise = n["brow"] * 2.5
    t = _T[9]
    brows = []
    for side in (-1.0, 1.0):
        xi = side * (p["eye_dx"] - ew * p["brow_in"])
        xo = side * (p["eye_dx"] + ew * p["brow_out"])
        xs = xi + (xo - xi) * t
        ys = p["brow_y"] - braise - p["brow_arch"] * np.sin(t * math.pi * 0.85) ** 1.2 - p["brow_slope"] * t
        th = p["brow_th"] * (1.0 - 0.55 * t ** 1.5) + 0.4
        brows.append((np.concatenate([xs, xs[::-1]]), np.concatenate([ys - th / 2, (ys + th / 2)[::-1]]), 0.0))
    cv.fill_many(head.Pn(brows), _mix(skin, hair * 0.7, p["brow_alpha"]))
    # --- hair cap
    yt, ys_arc = g["yt"], g["ys_arc"]
    w_arc = g["w_arc"] * ((W + vol) / W)
    if style == 3:
        w_arc = w_arc * (1.0 + 0.05 * np.sin(p["curl_k"] * math.pi * _T[26] + p["curl_phase"]))
    ya = ys_arc - vol * _T[26]
    outer = S(np.concatenate([-w_arc, w_arc[::-1]]), np.concatenate([ya, ya[::-1]]))
    xs = 0.88 * W * _S[15][::-1]
    r = np.abs(xs) / W
    yh = hl + p["hl_curve"] * r ** 2 - p["recede"] * np.exp(-(((r - 0.5) / 0.2) ** 2)) + p["part"] * xs / W
    if style == 4:
        yh = yh + 0.8 * np.sin(xs * 0.9 + p["curl_phase"])
    yh = np.minimum(yh, yt - 2)
    w_t = g["w_t"]
    poly = np.concatenate([
        outer,
        S(np.array([w_t * 0.99]), np.array([yt])),
        P(np.concatenate([[w_t * 0.92], xs, [-w_t * 0.92]]), np.concatenate([[yt], yh, [yt]]), 1.0),
        S(np.array([-w_t * 0.99]), np.array([yt])),
    ])
    if style == 2:
        cv.fill(poly, _mix(skin, hair, 0.35))
    else:
        cv.fill(poly, hair)
        xx = 0.6 * W * _S[5]
        strands = [P(xx + (k - 1) * 7.0, hl - 6.0 - 5.0 * k + 5 * (xx / W) ** 2, 2.0) for k in range(3)]
        cv.lines(strands, _mix(hair, hair * 0.7 + 10, 0.4))
    # --- mouth
    lip = p["lip"]
    t = _S[13]
    yline = my - 2.5 * smile * t ** 2
    gap = 5.5 * mopen + 1.0 * mopen * smile
    env = 1 - t ** 2
    up_th = p["lip_up"] * (1.0 - 0.25 * smile) * env ** 0.6
    bow = p["bow"] * np.exp(-((np.abs(t) - 0.22) / 0.15) ** 2)
    lo_th = p["lip_lo"] * env ** 0.7
    xs = mw * t
    xs2 = np.concatenate([xs, xs[::-1]])
    y_ub = yline - gap * 0.3 + 0.2 * env
    y_lt = yline + gap * 0.7 * env ** 0.5
    up_top = y_ub - 0.2 * env - up_th - bow * 0.6
    teeth_b = y_ub[2:-2] + gap * 0.35 * env[2:-2]
    pr = head.Pn([(xs2, np.concatenate([y_ub, y_lt[::-1]]), 0.0),
                  (np.concatenate([xs[2:-2], xs[-3:1:-1]]), np.concatenate([y_ub[2:-2], teeth_b[::-1]]), 0.0),
                  (xs2, np.concatenate([up_top, y_ub[::-1]]), 0.0),
                  (xs2, np.concatenate([y_lt, (y_lt + lo_th)[::-1]]), 0.0)])
    if mopen > 0.05:
        cv.fill(pr[0], (45, 20, 22))
        if mopen > 0.3:
            cv.fill(pr[1], (225, 220, 205))
    cv.fill(pr[2], lip * 0.92)
    cv.fill(pr[3], lip)
    cv.line(pr[2][13:], lip * 0.5)
    if beard in (2, 4):
        t2 = _S[11]
        mx = (mw + 1.5) * t2
        mth = 2.5 + 0.25 * (p["beard_top"] + 4.0)
        mbot = (my - 2.5 * smile * t2 ** 2) - gap * 0.3 - p["lip_up"] * 0.5 + 2.5 * t2 ** 2
        mtop = mbot - mth * (1.0 - 0.5 * t2 ** 2)
        cv.fill(P(np.concatenate([mx, mx[::-1]]), np.concatenate([mtop, mbot[::-1]])), _mix(skin, hair * 0.75, 0.9))
    # --- face mask
    if n["mask"]:
        mcol = n["mask_col"]
        yt_m = nose_y - 11.0 + n["mask_top"]
        xs = _S[13] * float(head.half_width(np.array([yt_m]))[0])
        topl = P(xs, yt_m + 3.0 * (xs / W) ** 2 - 2.0 * np.exp(-((xs / 6.0) ** 2)), 6.0)
        ys_o = yt_m + 2 + (p["chin_y"] - yt_m) * _T[10]
        wo = head.half_width(ys_o) * 0.98
        cv.fill(np.concatenate([topl, S(wo, ys_o), S(-wo[::-1], ys_o[::-1])]), mcol)
        pleats = []
        for k in (1, 2, 3):
            yy = yt_m + k * (p["chin_y"] - yt_m) / 4.5
            pleats.append(P(_S[7] * 0.8 * float(head.half_width(np.array([yy]))[0]), np.full(7, yy), 6.0))
        cv.lines(pleats, _mix(mcol, mcol * 0.75, 0.45))
        straps = []
        for side in (-1.0, 1.0):
            a1 = S(np.array([side * W * 1.02]), np.array([p["ear_y"] - 2]))[0]
            straps.append(np.stack([topl[0 if side < 0 else -1], a1]))
        cv.lines(straps, mcol * 0.9)
    # --- glasses / sunglasses
    if n["glasses"] or n["sunglasses"]:
        c_, s_ = _CIRC[20]
        pw = 2.0 / p["lens_pow"]
        lxs = np.sign(c_) * np.abs(c_) ** pw * ew * p["lens_w"]
        lys = np.sign(s_) * np.abs(s_) ** pw * ew * p["lens_h"] + 0.8
        frame = p["frame"] if n["glasses"] else (20, 20, 20)
        th = p["frame_th"] if n["glasses"] else 2
        lenses = [P(side * p["eye_dx"] + lxs, lys, 7.0) for side in (-1.0, 1.0)]
        if n["sunglasses"]:
            cv.fill_many(lenses, (18, 20, 24))
        arms = []
        for side in (-1.0, 1.0):
            a0 = P(np.array([side * (p["eye_dx"] + ew * p["lens_w"])]), np.array([-1.0]), 7.0)[0]
            a1 = S(np.array([side * W]), np.array([p["ear_y"] - 5]))[0]
            arms.append(np.stack([a0, a1]))
        xb = p["eye_dx"] - ew * p["lens_w"]
        arms.append(P(np.array([-xb, 0.0, xb]), np.array([-1.0, -2.5, -1.0]), np.array([7.0, 9.0, 7.0])))
        cv.lines(lenses, frame, th, closed=True)
        cv.lines(arms, frame, th)
    # --- random occluder (hand, object, microphone ...)
    if n["occluder"]:
        q = n["occ"]
        side = -1.0 if q[0] < 0.5 else 1.0
        cx = 56 * sc + side * (30 + 25 * q[1]) * sc
        cy = (50 + 50 * q[2]) * sc
        col = skin * (0.8 + 0.3 * q[3]) if q[4] < 0.5 else q[5:8] * 255
        ex_, ey_ = _ellipse(cx, cy, (12 + 14 * q[3]) * sc, (18 + 20 * q[6]) * sc, 20, rot=q[7] * 3)
        cv.fill(np.stack([ex_, ey_], -1), col)

    # --- lighting and camera
    f = img.astype(np.float32)
    gxg, gyg = _grid(size)
    fc = S(np.array([0.0]), np.array([20.0]))[0] / size * 2.0 - 1.0
    k = size / (2.0 * W * sc * head.sil_x * 1.05)
    uu = np.clip((gxg - np.float32(fc[0])) * np.float32(k), -1.3, 1.3)
    light = (np.float32(n["light_g"] * lxd) * uu + np.float32(1.0 - n["light_g"] * lyd * 0.6 * fc[1])) \
        + np.float32(n["light_g"] * lyd * 0.6) * gyg
    light = light - np.float32(n["light_side"]) * np.square(np.maximum(np.float32(-lxd) * uu, 0.0))
    f *= (light[..., None] * (n["cast"] * np.float32(n["light_i"]))[None, None, :])
    if n["blur"] > 0:
        f = cv2.GaussianBlur(f, (0, 0), n["blur"] * sc)
    if n["noise"] > 0.3:
        bank = _noise_bank()
        k = f.size
        off = int(n["noise_off"] * (len(bank) - k))
        f += bank[off:off + k].reshape(f.shape) * np.float32(n["noise"])
    if n["gray"]:
        g = f @ np.array([0.299, 0.587, 0.114], np.float32)
        f = np.repeat(g[..., None], 3, axis=2)
    out = np.clip(f + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
    if abs(n["gamma"] - 1.0) > 0.02:
        out = cv2.LUT(out, _gamma_lut(round(n["gamma"], 2)))
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
