"""What the three commands do: enrol a folder of people, identify faces in images, check a dose."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.align import frame_config, photo_config
from ..data.detectors import ROBOT_DETECTOR, check_detector
from ..errors import UserError
from .embedder import EmbedModel, load_embed_model
from .enrol import (DEFAULT_CALIBRATION, DEFAULT_FAR, REAL, SYNTHETIC, EnrolReport, calibration_faces,
                    calibration_kind, face_crops, recalibrate, scan_gallery)
from .gallery import Gallery, Templates, is_empty_database, shown
from .gallery_check import check_gallery
from .pipeline import AlignedFinder, FaceFinder, Match, check_aligned_crop, embed, match, read_image


def enrol(model_spec: str | None, gallery_dir: str | Path, db: str | Path, *, far: float = DEFAULT_FAR,
          calibration: str | None = None, n_calibration: int = 1000, flip: bool = True, aligned: bool = False,
          overwrite: bool = False, progress: bool = False, finder: Any | None = None,
          detector: str | None = None) -> EnrolReport:
    """Embed every person's photos into ``db`` (created if new) and recompute the threshold. People already
    enrolled are refused unless ``overwrite``; the whole enrolment is one transaction. ``detector`` detects
    and aligns the photos (compress.data.detectors); None = the gallery's own, or ROBOT_DETECTOR for a new one.
    ``model_spec`` None: the gallery's own model, or WARD_MODEL for a new gallery."""
    if not 0 < far < 1:
        raise UserError(f"--far {far} must be between 0 and 1, e.g. 0.001")
    if detector is not None:
        check_detector(detector)
    people = scan_gallery(gallery_dir)
    model = load_embed_model(model_spec or _gallery_model(db))
    enrolled: list[str] = []
    if Path(db).exists() and not is_empty_database(db):  # refuse before minutes of embedding, not after
        with Gallery(db) as g:
            check_gallery(g)
            if detector is None and "model_sha256" in g.meta():
                detector = gallery_detector(g.meta())
            _check_existing(g, model, flip, people, overwrite, detector or ROBOT_DETECTOR)
            enrolled = g.people()
    detector = detector or ROBOT_DETECTOR
    report = EnrolReport(model=model.describe())
    finder = finder or (AlignedFinder() if aligned else FaceFinder(config=photo_config(detector)))
    rows = _embed_people(people, model, flip, finder, report)
    if not rows:
        raise UserError(f"no usable face in any person folder of {gallery_dir} ({_first_reason(report)}); nothing "
                        "was enrolled")
    cal = None
    if calibration is not None or not enrolled:
        spec = calibration or DEFAULT_CALIBRATION
        images, desc = calibration_faces(spec, n_calibration, set(people) | set(enrolled), aligned, progress,
                                         config=photo_config(detector))
        cal = (model.embedder.embed(images, flip=flip), desc, SYNTHETIC if spec == "synthetic" else REAL)
    with Gallery(db, create=True) as g:
        with g.transaction() as c:
            _check_existing(g, model, flip, people, overwrite, detector)  # again: another process may have written
            g.set_meta(c, {"detector": detector, "model_spec": model.spec, "model_name": model.name, "model_sha256": model.sha256,
                           "runtime": model.runtime, "precision": model.precision, "flip": flip, "far": far,
                           "embedding_dim": int(next(iter(rows.values()))[0]["vector"].size)})
            for name, person_rows in rows.items():
                g.add_person(c, name, str(Path(person_rows[0]["image"]).parent), person_rows, replace=overwrite)
            if cal is not None:
                g.set_calibration(c, cal[0], cal[1], model.sha256)
                g.set_meta(c, {"calibration_source": cal[1], "calibration_kind": cal[2]})
            report.threshold = recalibrate(g, c, g.templates(model.sha256), model, far, flip)
            g.audit(c, command="enrol", decision="enrolled", scores={}, model_sha256=model.sha256,
                    detail=json.dumps({"enrolled": report.enrolled, "not_enrolled": report.not_enrolled,
                                       "rejected": report.rejected}))
    return report


def _gallery_model(db: str | Path) -> str:
    """enrol without --model: the model an existing gallery was enrolled with, WARD_MODEL for a new one."""
    from ..zoo import WARD_MODEL

    if Path(db).exists() and not is_empty_database(db):
        with Gallery(db) as g:
            check_gallery(g)
            spec = g.meta().get("model_spec")
            if spec:
                return str(spec)
    return WARD_MODEL


def _check_existing(g: Gallery, model: EmbedModel, flip: bool, people: dict[str, list[Path]],
                    overwrite: bool, detector: str = ROBOT_DETECTOR) -> None:
    m = g.meta()
    g.check_model(model.sha256, model.spec)
    if m.get("model_sha256") and gallery_detector(m) != detector:  # one gallery, one way of cropping faces
        raise UserError(f"{g.path} was enrolled with --detector {gallery_detector(m)}; enrol into it with the same "
                        "detector or into a new --db")
    if m.get("flip") is not None and json.loads(m["flip"]) != flip:
        raise UserError(f"{g.path} was enrolled {'with' if json.loads(m['flip']) else 'without'} flip fusion; "
                        "enrol into it with the same setting or into a new --db")
    already = sorted(set(people) & set(g.people()))
    if already and not overwrite:
        raise UserError(f"{len(already)} of these people are already enrolled in {g.path} ({', '.join(already[:3])}"
                        f"{' ...' if len(already) > 3 else ''}); pass --overwrite to replace their photos")


def _first_reason(report: EnrolReport) -> str:
    for name, why in report.not_enrolled.items():
        return f"{name}: {why[0]}"
    return "no photos"


def _embed_people(people: dict[str, list[Path]], model: EmbedModel, flip: bool, finder: Any,
                  report: EnrolReport) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, paths in people.items():
        if not paths:
            report.not_enrolled[name] = ["no image files in the folder"]
            continue
        crops, scores, used, rejected = face_crops(paths, finder)
        if not crops:
            report.not_enrolled[name] = [f"{Path(p).name}: {why}" for p, why in rejected]
            continue
        report.rejected += rejected
        vecs = embed(model, crops, flip)
        rows[name] = [{"vector": v, "image": u, "model_sha256": model.sha256, "runtime": model.runtime,
                       "precision": model.precision, "face_score": s} for v, u, s in zip(vecs, used, scores)]
        report.enrolled[name] = len(used)
    return rows


# ------------------------------------------------------------------------------------------------ identify

@dataclass
class OpenGallery:
    gallery: Gallery
    model: EmbedModel
    templates: Templates
    threshold: float
    threshold_info: dict[str, Any]
    flip: bool
    calibration_kind: str  # "real" or "synthetic": what the threshold was set on

    @property
    def calibrated_on_real_faces(self) -> bool:
        return self.calibration_kind == REAL

    def describe_threshold(self) -> str:
        i = self.threshold_info
        line = (f"threshold {self.threshold:.4f} = open-set FAR {i.get('far'):g} on {i.get('impostors')} calibration "
                f"impostors ({i.get('calibration', '?').split(':')[0]})")
        return line if self.calibrated_on_real_faces else line + "; " + UNCALIBRATED_WARNING


UNCALIBRATED_WARNING = ("WARNING: this threshold was NOT set on real faces, so strangers may be named as enrolled "
                        "people; re-enrol with --calibration FOLDER (real faces of people not enrolled) or "
                        "lfw-singletons:LFW_DIR")


def open_gallery(db: str | Path, model_spec: str | None = None) -> OpenGallery:
    """The gallery, its model (the one it was enrolled with, hash-checked) and templates."""
    g = Gallery(db)
    try:
        checked = check_gallery(g)  # before the model loads: a damaged gallery is one line, at once
        m = g.meta()
        if checked is None:
            raise UserError(f"gallery {db} has nobody enrolled; enrol people first with `compress enrol --db {db}`")
        model = load_embed_model(model_spec or m["model_spec"])
        if model_spec is None and model.sha256 != m["model_sha256"]:
            raise UserError(f"the model {m['model_spec']} changed since {db} was enrolled (sha256 "
                            f"{model.sha256[:12]} != {m['model_sha256'][:12]}); re-enrol with `compress enrol "
                            f"--model {m['model_spec']} --gallery DIR --db NEW.db`")
        g.check_model(model.sha256, model.spec)
        return OpenGallery(g, model, checked.templates, checked.threshold, checked.threshold_info, checked.flip,
                           calibration_kind(m))
    except BaseException:
        g.close()
        raise


def gallery_detector(meta: dict[str, str]) -> str:
    """The detector a gallery was enrolled with (galleries from before the choice existed: MTCNN)."""
    return meta.get("detector", "mtcnn")


def gallery_finder(og: OpenGallery, detector: str | None = None, aligned: bool = False, frames: bool = False) -> Any:
    """How faces are found for this gallery: ``detector`` when given, else the one it was enrolled with;
    camera/video frames (``frames``) use the detector's frame settings (compress.data.align.frame_config)."""
    if aligned:
        return AlignedFinder()
    name = check_detector(detector or gallery_detector(og.gallery.meta()))
    return FaceFinder(config=frame_config(name) if frames else photo_config(name))


def identify_faces(og: OpenGallery, img: np.ndarray, finder: Any, top_k: int) -> tuple[list[Any], list[Match]]:
    faces = finder.faces(img)
    if not faces:
        return [], []
    emb = embed(og.model, [f.crop for f in faces], og.flip)
    if not np.isfinite(emb).all():  # NaN scores would read as a silent "unknown", or worse
        raise UserError(f"the model {og.model.describe()} gave a NaN or infinite embedding; the model file is "
                        "broken: re-export it and re-enrol")
    return faces, match(emb, og.templates.names, og.templates.vectors, og.threshold, top_k)


def identify(db: str | Path, images: list[str | Path], *, top_k: int = 3, model_spec: str | None = None,
             finder: Any | None = None, aligned: bool = False, detector: str | None = None) -> dict[str, Any]:
    """Per image, per face: the top-k people with scores and the decision (a name, or "unknown"). An image
    without a face is an explicit "no face" answer; an unreadable one is a UserError before any is answered.
    ``detector``: None = the one the gallery was enrolled with."""
    if top_k < 1:
        raise UserError(f"--top-k {top_k} must be at least 1")
    if detector is not None:
        check_detector(detector)
    decoded = [(str(p), read_image(p)) for p in images]  # every image readable before any answer
    if aligned and finder is None:  # every crop checked, and named, before any answer or audit row
        for path, img in decoded:
            check_aligned_crop(img, path)
    og = open_gallery(db, model_spec)
    finder = finder or gallery_finder(og, detector, aligned)
    out = []
    with og.gallery as g:
        for path, img in decoded:
            faces, matches = identify_faces(og, img, finder, top_k)
            answers = [{"box": f.box, "face_score": round(f.score, 4), "decision": m.person or "unknown",
                        "top": m.ranked} for f, m in zip(faces, matches)]
            with g.transaction() as c:
                g.audit(c, command="identify", decision=_identify_decision(answers), image=path,
                        scores=[a["top"] for a in answers], threshold=og.threshold, model_sha256=og.model.sha256)
            out.append({"image": path, "faces": answers})
    return {"format": "compress.identify/1", "results": out, "threshold": og.threshold,
            "threshold_info": og.threshold_info, "threshold_line": og.describe_threshold(),
            "calibrated_on_real_faces": og.calibrated_on_real_faces,
            "model": og.model.describe(), "model_sha256": og.model.sha256, "people": len(og.templates.names),
            "flip": og.flip}


def _identify_decision(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "no face"
    return ",".join(a["decision"] for a in answers)


# ------------------------------------------------------------------------------------------------ text output

def format_enrol(report: EnrolReport, db: str | Path) -> tuple[str, str]:
    """(stdout, stderr) lines: who was enrolled, and every person and photo that was not."""
    t = report.threshold
    out = [f"enrolled {len(report.enrolled)} people ({sum(report.enrolled.values())} photos) into {db}",
           f"model: {report.model}",
           f"threshold {t['threshold']:.4f}: open-set FAR {t['far']:g} (accept iff best score > threshold; "
           f"{t['false_accepts']} of {t['impostors']} impostors above it) on {t['calibration']}"]
    if t.get("note"):
        out.append(f"note: {t['note']}")
    if t.get("calibration_kind") != REAL:
        out.append(UNCALIBRATED_WARNING + "; check-dose refuses this gallery without --allow-uncalibrated")
    err = [f"NOT ENROLLED {name}: {'; '.join(why)}" for name, why in report.not_enrolled.items()]
    err += [f"photo not used: {p}: {why}" for p, why in report.rejected]
    return "\n".join(map(shown, out)), "\n".join(map(shown, err))


def format_identify(res: dict[str, Any]) -> str:
    lines = []
    for r in res["results"]:
        if not r["faces"]:
            lines.append(f"{r['image']}: no face found")
            continue
        for i, f in enumerate(r["faces"], 1):
            top = ", ".join(f"{n} {s:.4f}" for n, s in f["top"])
            where = f" face {i}/{len(r['faces'])} at {[round(v) for v in f['box']]}" if len(r["faces"]) > 1 else ""
            lines.append(f"{r['image']}{where}: {f['decision']}  (top: {top})")
    lines.append(f"{res['threshold_line']}; {res['people']} people enrolled; model {res['model']}")
    return "\n".join(map(shown, lines))
