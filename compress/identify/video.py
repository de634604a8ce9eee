"""Video input for identify and check-dose: frames from a clip or a camera (OpenCV), every face identified per
frame, and a short temporal vote: a person is confirmed once they are the decision in k of the last n frames
(``--vote k/n``), so one lucky or unlucky frame neither confirms nor loses anyone.

Exit codes (the CLI): 0 someone confirmed; 1 the input was read but nobody was confirmed (no face in any frame,
only strangers, or too few agreeing frames); 2 bad input (an unreadable or empty video, a camera that does not
open, a bad --vote, an unknown --detector), said in one line before anything is written. Only confirmations
are audited in the gallery; a clip in which nobody is confirmed writes nothing.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import UserError

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
DEFAULT_VOTE = "3/5"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def parse_vote(text: str) -> tuple[int, int]:
    """'k/n' -> (k, n) with 1 <= k <= n <= 100, or a one-line UserError."""
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        k = n = -1
    if not 1 <= k <= n <= 100:
        raise UserError(f"--vote {text!r}: write k/n with 1 <= k <= n <= 100, e.g. {DEFAULT_VOTE} (confirmed in 3 of "
                        "the last 5 frames)")
    return k, n


def check_max_frames(max_frames: int | None) -> None:
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames {max_frames} must be at least 1 (or left out: every frame)")


class Source:
    """An opened clip or camera; bad input is a UserError here, before any gallery is opened."""

    def __init__(self, video: str | Path | None = None, camera: int | None = None) -> None:
        import cv2

        if (video is None) == (camera is None):
            raise UserError("pass a video file or --camera N (one of them)")
        if camera is not None:
            self.label = f"camera {camera}"
            self.cap = cv2.VideoCapture(int(camera))
            if not self.cap.isOpened():
                raise UserError(f"camera {camera} did not open; check that it is connected and not in use, or pass "
                                "another --camera index")
        else:
            p = Path(video)
            self.label = str(p)
            if not p.is_file():
                raise UserError(f"video {p} not found; pass an existing video file (.mp4, .avi, ...)")
            self.cap = cv2.VideoCapture(str(p))
            if not self.cap.isOpened():
                raise UserError(f"{p} is not a readable video (OpenCV could not open it); pass an .mp4/.avi clip")
        ok, first = self.cap.read()
        if not ok or first is None or first.size == 0:
            self.cap.release()
            what = "empty or unreadable video" if camera is None else "no image from the camera"
            raise UserError(f"{self.label} gave no frames ({what}); pass a clip with frames")
        self._first: np.ndarray | None = first
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """RGB uint8 frames until the clip ends (or max_frames)."""
        import cv2

        n = 0
        try:
            while max_frames is None or n < max_frames:
                if self._first is not None:
                    bgr, self._first = self._first, None
                else:
                    ok, bgr = self.cap.read()
                    if not ok or bgr is None:
                        return
                n += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            self.cap.release()


@dataclass
class Vote:
    """Confirmed after k of the last n frames name the same person."""

    k: int
    n: int
    window: deque = field(default_factory=deque)
    confirmed: dict[str, int] = field(default_factory=dict)  # person -> frame index of confirmation

    def add(self, frame: int, people: set[str]) -> list[str]:
        """Record this frame's decisions; returns the people confirmed by it (newly)."""
        self.window.append(people)
        if len(self.window) > self.n:
            self.window.popleft()
        new = []
        for p in sorted(people):
            if p not in self.confirmed and sum(p in w for w in self.window) >= self.k:
                self.confirmed[p] = frame
                new.append(p)
        return new

    def count(self, person: str) -> int:
        return sum(person in w for w in self.window)


@dataclass
class StreamResult:
    frames: int = 0
    seconds: float = 0.0
    frames_with_faces: int = 0
    confirmed: dict[str, int] = field(default_factory=dict)
    per_frame: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def identify_stream(og: Any, source: Source, finder: Any, vote: tuple[int, int], *, top_k: int = 3,
                    max_frames: int | None = None, say: Callable[[str], None] = print,
                    accept: Callable[[Any, list], set[str]] | None = None) -> StreamResult:
    """Identify every face in every frame, vote, print one line per frame; ``accept`` turns a frame's (faces,
    matches) into the people it votes for (default: every face's decision that is not "unknown")."""
    from .api import identify_faces

    v = Vote(*vote)
    res = StreamResult()
    t0 = time.perf_counter()
    for i, frame in enumerate(source.frames(max_frames)):
        faces, matches = identify_faces(og, frame, finder, top_k)
        people = accept(faces, matches) if accept else {m.person for m in matches if m.person}
        new = v.add(i, people)
        res.frames += 1
        res.frames_with_faces += bool(faces)
        answers = [{"box": [round(x) for x in f.box], "decision": m.person or "unknown", "top": m.ranked[:top_k]}
                   for f, m in zip(faces, matches)]
        res.per_frame.append({"frame": i, "faces": answers, "confirmed": new})
        text = "; ".join(f"{a['decision']} {a['top'][0][1]:.4f} [{v.count(a['decision'])}/{v.n}]"
                         if a["decision"] != "unknown" else f"unknown (best {a['top'][0][0]} {a['top'][0][1]:.4f})"
                         for a in answers) or "no face"
        say(f"frame {i}: {text}" + "".join(f"  -> CONFIRMED {p} ({v.k} of {v.n} frames)" for p in new))
        if new and accept is not None:  # check-dose stops at the first confirmation
            res.confirmed = dict(v.confirmed)
            res.seconds = time.perf_counter() - t0
            res.last_frame = frame  # type: ignore[attr-defined]
            return res
    res.confirmed = dict(v.confirmed)
    res.seconds = time.perf_counter() - t0
    return res


def identify_video(db: str | Path, video: str | Path | None = None, camera: int | None = None, *,
                   vote: str = DEFAULT_VOTE, detector: str | None = None, top_k: int = 3,
                   model_spec: str | None = None, max_frames: int | None = None,
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    """`compress identify --db DB clip.mp4` / `--camera N`: per-frame answers, the vote, frames/s; each
    confirmation is audited once."""
    from ..data.detectors import check_detector
    from .api import gallery_finder, open_gallery

    kn = parse_vote(vote)
    check_max_frames(max_frames)
    if detector is not None:
        check_detector(detector)
    if top_k < 1:
        raise UserError(f"--top-k {top_k} must be at least 1")
    source = Source(video, camera)  # bad input stops here: the gallery is not opened
    og = open_gallery(db, model_spec)
    with og.gallery as g:
        finder = gallery_finder(og, detector, frames=True)
        r = identify_stream(og, source, finder, kn, top_k=top_k, max_frames=max_frames, say=say)
        if r.confirmed:
            with g.transaction() as c:
                for person, frame in r.confirmed.items():
                    g.audit(c, command="identify", decision=person, person=person, image=f"{source.label}#frame{frame}",
                            scores=[a["top"] for a in r.per_frame[frame]["faces"]], threshold=og.threshold,
                            model_sha256=og.model.sha256, detail=json.dumps({"vote": f"{kn[0]}/{kn[1]}"}))
    return {"format": "compress.identify.video/1", "source": source.label, "frames": r.frames,
            "frames_with_faces": r.frames_with_faces, "seconds": round(r.seconds, 3), "fps": round(r.fps, 2),
            "vote": f"{kn[0]}/{kn[1]}", "confirmed": r.confirmed, "per_frame": r.per_frame,
            "detector": finder.config.detector, "detect_max_side": finder.config.detect_max_side,
            "model": og.model.describe(), "model_sha256": og.model.sha256, "threshold": og.threshold,
            "threshold_line": og.describe_threshold()}


def format_video_summary(r: dict[str, Any]) -> str:
    who = ", ".join(f"{p} (frame {f})" for p, f in r["confirmed"].items()) or "nobody"
    none = f"; no face in any of {r['frames']} frames" if r["frames_with_faces"] == 0 else ""
    return (f"{r['source']}: confirmed {who} (vote {r['vote']}){none}\n{r['frames']} frames in {r['seconds']:.2f} s: "
            f"{r['fps']:.1f} frames/s measured on this host (detector {r['detector']} at max side "
            f"{r['detect_max_side']}, model {r['model']})\n{r['threshold_line']}")


def check_dose_video(db: str | Path, plan_path: str | Path, video: str | Path | None = None,
                     camera: int | None = None, at: str | None = None, *, margin: float, vote: str = DEFAULT_VOTE,
                     detector: str | None = None, max_frames: int | None = None, allow_uncalibrated: bool = False,
                     say: Callable[[str], None] = print) -> dict[str, Any]:
    """check-dose on a clip or camera: a frame votes for a person when it holds exactly one face that passes
    the threshold and the margin; once k of the last n frames agree, the dose check runs on that frame."""
    from ..data.detectors import check_detector
    from .api import gallery_finder, open_gallery
    from .dose import check_dose, check_margin, parse_at, refuse_if_uncalibrated

    margin = check_margin(margin)
    kn = parse_vote(vote)
    check_max_frames(max_frames)
    when = parse_at(at)
    if detector is not None:
        check_detector(detector)
    source = Source(video, camera)
    og = open_gallery(db)
    try:
        refuse_if_uncalibrated(og, db, source.label, when, allow_uncalibrated)
        from .dose import load_plan

        load_plan(plan_path, og.gallery.people())  # a bad plan stops before any frame is read
        finder = gallery_finder(og, detector, frames=True)

        def accept(faces: list, matches: list) -> set[str]:
            if len(matches) != 1 or matches[0].person is None:
                return set()
            m = matches[0]
            ok = m.best[1] - og.threshold >= margin and m.margin() >= margin
            return {m.person} if ok else set()

        r = identify_stream(og, source, finder, kn, max_frames=max_frames, say=say, accept=accept)
    finally:
        og.gallery.close()
    base = {"source": source.label, "frames": r.frames, "fps": round(r.fps, 2), "vote": f"{kn[0]}/{kn[1]}"}
    if not r.confirmed:
        why = (f"no face in any of {r.frames} frames" if r.frames_with_faces == 0 else
               f"nobody confirmed: no patient was the single, confident face in {kn[0]} of {kn[1]} frames "
               f"({r.frames} frames read)")
        return {**base, "decision": "refused", "reason": why, "person": None, "doses": [], "scores": [],
                "model": og.model.describe(), "threshold_note": og.describe_threshold(), "audited": False}
    person, frame = next(iter(r.confirmed.items()))
    out = check_dose(db, plan_path, r.last_frame, at, margin=margin, finder=finder,  # type: ignore[attr-defined]
                     allow_uncalibrated=allow_uncalibrated, image_label=f"{source.label}#frame{frame}")
    return {**base, **out, "confirmed_frame": frame, "audited": True}
