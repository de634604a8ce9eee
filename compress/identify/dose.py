"""The medication plan and the dose check: confirm the patient in front of the robot and the dose due now,
or refuse with the reason. Refusing is always safe; a confirmation needs one face, a confident match, a dose
due within its window, and no earlier confirmation of that dose (the audit table is the administration log).

Plan file (TOML)::

    [[patient]]
    name = "Alice_Smith"            # as enrolled: the person's folder name
    [[patient.medication]]
    drug = "Metformin 500 mg"
    times = ["08:00", "20:00"]      # local clock times, every day
    window_minutes = 60             # due from 60 min before to 60 min after each time (default 60)
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from ..errors import UserError

DEFAULT_WINDOW_MIN = 60
# A confirmation needs the best score this far above the threshold and above the runner-up: a face that only
# just passes, or that two patients match almost equally, is refused as low confidence.
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Dose:
    drug: str
    times: tuple[time, ...]
    window: timedelta


@dataclass(frozen=True)
class Plan:
    path: Path
    patients: dict[str, tuple[Dose, ...]]


def _time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"{where}: time {value!r} is not HH:MM; write times like \"08:00\"") from None


def _dose(d: Any, where: str) -> Dose:
    if not isinstance(d, dict) or set(d) - {"drug", "times", "window_minutes"}:
        extra = sorted(set(d) - {"drug", "times", "window_minutes"}) if isinstance(d, dict) else d
        raise UserError(f"{where}: unknown key(s) {extra}; a medication has drug, times, window_minutes")
    if not isinstance(d.get("drug"), str) or not d["drug"].strip():
        raise UserError(f"{where}: every medication needs drug = \"NAME DOSE\"")
    times = d.get("times")
    if not isinstance(times, list) or not times:
        raise UserError(f"{where} ({d['drug']}): times must be a non-empty list like [\"08:00\", \"20:00\"]")
    window = d.get("window_minutes", DEFAULT_WINDOW_MIN)
    if not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= 720:
        raise UserError(f"{where} ({d['drug']}): window_minutes must be a whole number of minutes in 1..720")
    return Dose(d["drug"].strip(), tuple(_time(t, where) for t in times), timedelta(minutes=window))


def load_plan(path: str | Path, enrolled: list[str]) -> Plan:
    """Parse and check the plan; a patient who is not enrolled is an error, not a silent skip."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise UserError(f"cannot read plan {p} ({e.strerror or type(e).__name__}); pass the plan's .toml file"
                        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"plan {p} is not valid TOML ({e}); see `compress check-dose --help` for the format") from None
    if set(data) - {"patient"} or not isinstance(data.get("patient"), list) or not data["patient"]:
        raise UserError(f"plan {p}: expected one or more [[patient]] tables and nothing else")
    patients: dict[str, tuple[Dose, ...]] = {}
    for i, pt in enumerate(data["patient"], 1):
        where = f"plan {p}, patient {i}"
        if not isinstance(pt, dict) or set(pt) - {"name", "medication"} or not isinstance(pt.get("name"), str):
            raise UserError(f"{where}: a [[patient]] has name = \"...\" and [[patient.medication]] tables only")
        name = pt["name"]
        if name not in enrolled:
            raise UserError(f"{where}: {name!r} is not enrolled in the gallery; enrol them or fix the name "
                            f"(enrolled: {', '.join(enrolled[:5])}{' ...' if len(enrolled) > 5 else ''})")
        if name in patients:
            raise UserError(f"{where}: {name!r} appears twice; list each patient once")
        meds = pt.get("medication", [])
        if not isinstance(meds, list):
            raise UserError(f"{where}: medication must be [[patient.medication]] tables")
        patients[name] = tuple(_dose(d, f"{where} medication {j}") for j, d in enumerate(meds, 1))
    return Plan(p, patients)


def parse_at(value: str | None) -> datetime:
    """--at: an ISO date-time ("2026-12-01T08:10") or a clock time today ("08:10"); default: now (local)."""
    if value is None:
        return datetime.now().replace(microsecond=0)
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        pass
    try:
        return datetime.combine(datetime.now().date(), time.fromisoformat(value))
    except ValueError:
        raise UserError(f"--at {value!r} is neither a date-time (2026-12-01T08:10) nor a time (08:10)") from None


def due(plan: Plan, person: str, at: datetime) -> list[tuple[Dose, datetime]]:
    """Doses of ``person`` whose slot (today, yesterday or tomorrow at each time) is within its window of ``at``."""
    out = []
    for d in plan.patients.get(person, ()):
        for t in d.times:
            for day in (-1, 0, 1):
                slot = datetime.combine(at.date() + timedelta(days=day), t)
                if abs(at - slot) <= d.window:
                    out.append((d, slot))
    return sorted(out, key=lambda x: (abs(at - x[1]), x[0].drug))


def check_dose(db: str | Path, plan_path: str | Path, image: str | Path, at: str | None = None, *,
               margin: float = DEFAULT_MARGIN, finder: Any | None = None, detector: str | None = None,
               image_label: str | None = None) -> dict[str, Any]:
    """Confirm or refuse; every outcome is appended to the audit table with the scores and the model hash.
    ``image``: a file, or an RGB frame already decoded (video.py) that ``image_label`` names in the audit."""
    from ..data.detectors import check_detector
    from .api import gallery_finder, identify_faces, open_gallery
    from .pipeline import read_image

    when = parse_at(at)
    if detector is not None:
        check_detector(detector)
    img = image if hasattr(image, "shape") else read_image(image)
    label = image_label or str(image)
    og = open_gallery(db)
    with og.gallery as g:
        plan = load_plan(plan_path, g.people())
        faces, matches = identify_faces(og, img, finder or gallery_finder(og, detector), top_k=3)
        decision, reason, person, doses = _decide(plan, faces, matches, og.threshold, margin, when)
        out = {"decision": decision, "reason": reason, "person": person, "at": when.isoformat(),
               "threshold": og.threshold, "margin_required": margin, "faces": len(faces),
               "scores": matches[0].ranked if len(matches) == 1 else [m.ranked for m in matches], "doses": []}
        with g.transaction() as c:  # the "already given" check and the confirmation are one atomic step
            if decision == "confirmed":
                doses, given = _pending(g, c, person, doses)
                out["already_given"] = given
                if not doses:
                    out.update(decision="refused", reason="already given: " + "; ".join(
                        f"{x['drug']} for {x['slot']} at {x['confirmed_at']}" for x in given))
            if out["decision"] == "confirmed":
                for d, s in doses:
                    g.audit(c, command="check-dose", decision="confirmed", person=person, drug=d.drug,
                            slot=s.isoformat(), image=label, scores=out["scores"], threshold=og.threshold,
                            model_sha256=og.model.sha256, detail=f"at {when.isoformat()}")
                    out["doses"].append({"drug": d.drug, "slot": s.isoformat(timespec="minutes")})
            else:
                g.audit(c, command="check-dose", decision="refused", person=person, image=label,
                        scores=out["scores"], threshold=og.threshold, model_sha256=og.model.sha256,
                        detail=json.dumps({"reason": out["reason"], "at": when.isoformat()}))
    out["model"] = og.model.describe()
    out["threshold_note"] = og.describe_threshold()
    return out


def _pending(g: Any, c: Any, person: str, doses: list[tuple[Dose, datetime]]):
    """Per drug, the nearest due slot unless one of its due slots was confirmed already (overlapping windows
    must not let one drug be given twice)."""
    by_drug: dict[str, list[tuple[Dose, datetime]]] = {}
    for d, s in doses:  # nearest first
        by_drug.setdefault(d.drug, []).append((d, s))
    pending, given = [], []
    for drug, slots in by_drug.items():
        done = [(s, t) for _, s in slots if (t := g.given(c, person, drug, s.isoformat())) is not None]
        if done:
            given.append({"drug": drug, "slot": done[0][0].isoformat(timespec="minutes"), "confirmed_at": done[0][1]})
        else:
            pending.append(slots[0])
    return pending, given


def _decide(plan: Plan, faces: list, matches: list, threshold: float, margin: float, when: datetime):
    """(decision, reason, person, due doses) before the audit check; refusals name why."""
    if not faces:
        return "refused", "no face found in the image", None, []
    if len(faces) > 1:
        return "refused", f"{len(faces)} faces in the image; the dose check needs the patient alone", None, []
    m = matches[0]
    name, score = m.best
    if m.person is None:
        return "refused", f"unknown face (best {name} {score:.4f} <= threshold {threshold:.4f})", None, []
    if score - threshold < margin or m.margin() < margin:
        runner = f", runner-up {m.ranked[1][0]} {m.ranked[1][1]:.4f}" if len(m.ranked) > 1 else ""
        return "refused", (f"low confidence: {name} {score:.4f} vs threshold {threshold:.4f}{runner}; a confirmation "
                           f"needs {margin} above both"), None, []
    if not plan.patients.get(name):
        return "refused", f"{name} has no medication in {plan.path.name}", name, []
    doses = due(plan, name, when)
    if not doses:
        return "refused", f"nothing due for {name} at {when:%Y-%m-%d %H:%M}", name, []
    return "confirmed", "", name, doses
