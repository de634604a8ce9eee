"""The medication plan and the dose check: confirm the patient in front of the robot and the dose due now,
or refuse with the reason. Refusing is always safe; a confirmation needs one face, a confident match, a dose
due within its window, and no earlier confirmation of that dose (the audit table is the administration log).

Plan file (TOML)::

    [[patient]]
    name = "Alice_Smith"            # as enrolled: the person's folder name
    [[patient.medication]]
    drug = "Metformin 500 mg"
    times = ["08:00", "20:00"]      # local clock times, every day (no UTC offset)
    window_minutes = 60             # due from 60 min before to 60 min after each time (default 60)

"Already given" does not trust the plan's current wording: drugs are compared by a normalised name (NFC,
case-folded, whitespace collapsed), and a drug is not confirmed again for a patient within half the shortest
gap between its times (12 h for a once-daily drug) of an earlier confirmation's slot or time, so editing a
plan's time or spelling after a dose cannot give it twice.
"""

from __future__ import annotations

import json
import math
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from ..errors import UserError
from .gallery import has_control, nfc, shown

DEFAULT_WINDOW_MIN = 60
# A confirmation needs the best score this far above the threshold and above the runner-up: a face that only
# just passes, or that two patients match almost equally, is refused as low confidence.
DEFAULT_MARGIN = 0.05
MARGIN_RANGE = (0.0, 1.0)  # cosine scores lie in [-1, 1]; a negative margin would confirm below the threshold


# --at outside this range is refused: the dose check looks one day either side, and far dates overflow.
AT_RANGE = (datetime(1970, 1, 2), datetime(9999, 12, 30))


def drug_key(drug: str) -> str:
    """The name "already given" compares: NFC, case-folded, whitespace collapsed ("metformin 500 mg")."""
    return unicodedata.normalize("NFC", " ".join(unicodedata.normalize("NFC", drug).casefold().split()))


@dataclass(frozen=True)
class Dose:
    drug: str
    times: tuple[time, ...]
    window: timedelta

    @property
    def key(self) -> str:
        return drug_key(self.drug)

    def min_gap(self) -> timedelta:
        """Half the shortest gap between consecutive daily times (12 h for one time a day): two confirmations
        of this drug closer than this are one dose given twice."""
        minutes = sorted(t.hour * 60 + t.minute for t in self.times)
        gaps = [b - a for a, b in zip(minutes, minutes[1:])] + [minutes[0] + 24 * 60 - minutes[-1]]
        return timedelta(minutes=min(gaps) / 2)


@dataclass(frozen=True)
class Plan:
    path: Path
    patients: dict[str, tuple[Dose, ...]]


def _time(value: Any, where: str) -> time:
    try:
        t = time.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"{where}: time {value!r} is not HH:MM; write times like \"08:00\"") from None
    if t.tzinfo is not None:
        raise UserError(f"{where}: time {value!r} has a UTC offset; plan times are the ward's local clock times, "
                        f"write \"{t.replace(tzinfo=None).isoformat(timespec='minutes')}\" as the clock shows it")
    return t


def _dose(d: Any, where: str) -> Dose:
    if not isinstance(d, dict) or set(d) - {"drug", "times", "window_minutes"}:
        extra = sorted(set(d) - {"drug", "times", "window_minutes"}) if isinstance(d, dict) else d
        raise UserError(f"{where}: unknown key(s) {extra}; a medication has drug, times, window_minutes")
    if not isinstance(d.get("drug"), str) or not d["drug"].strip():
        raise UserError(f"{where}: every medication needs drug = \"NAME DOSE\"")
    if has_control(" ".join(d["drug"].split())):  # tabs and runs of spaces are spacing, not names
        raise UserError(f"{where}: drug {d['drug']!r} has a control character; write the name as printed on the pack")
    times = d.get("times")
    if not isinstance(times, list) or not times:
        raise UserError(f"{where} ({d['drug']}): times must be a non-empty list like [\"08:00\", \"20:00\"]")
    window = d.get("window_minutes", DEFAULT_WINDOW_MIN)
    if not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= 720:
        raise UserError(f"{where} ({d['drug']}): window_minutes must be a whole number of minutes in 1..720")
    parsed = tuple(_time(t, where) for t in times)
    if len({(t.hour, t.minute) for t in parsed}) != len(parsed):
        raise UserError(f"{where} ({d['drug']}): a time is listed twice (to the minute); list each time once")
    return Dose(" ".join(d["drug"].split()), parsed, timedelta(minutes=window))  # tabs, newlines: one space


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
        name = nfc(pt["name"])
        if has_control(name):
            raise UserError(f"{where}: name {name!r} has a control character; write it as enrolled")
        if name not in {nfc(e) for e in enrolled}:
            raise UserError(shown(f"{where}: {name!r} is not enrolled in the gallery; enrol them or fix the name "
                                  f"(enrolled: {', '.join(enrolled[:5])}{' ...' if len(enrolled) > 5 else ''})"))
        if name in patients:
            raise UserError(f"{where}: {name!r} appears twice; list each patient once")
        meds = pt.get("medication", [])
        if not isinstance(meds, list):
            raise UserError(f"{where}: medication must be [[patient.medication]] tables")
        doses = tuple(_dose(d, f"{where} medication {j}") for j, d in enumerate(meds, 1))
        keys = [d.key for d in doses]
        if len(set(keys)) != len(keys):
            twice = next(d.drug for d in doses if keys.count(d.key) > 1)
            raise UserError(f"{where}: {twice!r} is listed twice (names are compared ignoring case and spacing); "
                            "put all its times in one [[patient.medication]]")
        patients[name] = doses
    return Plan(p, patients)


def parse_at(value: str | None) -> datetime:
    """--at: an ISO date-time ("2026-12-01T08:10") or a clock time today ("08:10"); default: now (local).
    One with a UTC offset or Z is converted to local time, the clock the plan's times are on."""
    if value is None:
        return datetime.now().replace(microsecond=0)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        try:
            at = datetime.combine(datetime.now().date(), time.fromisoformat(value))
        except ValueError:
            raise UserError(f"--at {value!r} is neither a date-time (2026-12-01T08:10) nor a time (08:10)") from None
    lo, hi = AT_RANGE
    try:
        local = at.astimezone().replace(tzinfo=None) if at.tzinfo is not None else at
    except (OverflowError, ValueError, OSError):
        local = None
    if local is None or not lo <= local <= hi:
        raise UserError(f"--at {value!r} is out of range; pass a date-time between {lo:%Y-%m-%d} and {hi:%Y-%m-%d}")
    return local


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


def check_margin(margin: float) -> float:
    lo, hi = MARGIN_RANGE
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and lo <= margin <= hi):
        raise UserError(f"--margin {margin} must be a number in {lo:g}..{hi:g} (a cosine-score gap), e.g. "
                        f"{DEFAULT_MARGIN}")
    return float(margin)


def uncalibrated_error(db: str | Path) -> UserError:
    return UserError(f"gallery {db} has a threshold NOT set on real faces (synthetic calibration), so a stranger "
                     "could be confirmed for a dose; re-enrol with --calibration FOLDER (real faces of people not "
                     "enrolled) or lfw-singletons:LFW_DIR, or pass --allow-uncalibrated (recorded in the audit)")


def refuse_if_uncalibrated(og: Any, db: str | Path, label: str, when: datetime, allowed: bool) -> None:
    """A threshold not set on real faces cannot confirm a dose unless the user allowed it; the refusal is
    written to the administration log before the error."""
    if og.calibrated_on_real_faces or allowed:
        return
    error = uncalibrated_error(db)
    with og.gallery.transaction() as c:
        og.gallery.audit(c, command="check-dose", decision="refused", image=label, scores=[],
                         threshold=og.threshold, model_sha256=og.model.sha256,
                         detail=json.dumps({"reason": str(error), "at": when.isoformat(), "calibration": "synthetic"}))
    raise error


def check_dose(db: str | Path, plan_path: str | Path, image: str | Path, at: str | None = None, *,
               margin: float = DEFAULT_MARGIN, finder: Any | None = None,
               allow_uncalibrated: bool = False, aligned: bool = False, detector: str | None = None,
               image_label: str | None = None) -> dict[str, Any]:
    """Confirm or refuse; every outcome is appended to the audit table with the scores and the model hash.
    A gallery whose threshold was not set on real faces is refused (UserError, audited) unless
    ``allow_uncalibrated``; then every audit row of this check says so. ``image``: a file, or an RGB frame
    already decoded (video.py) that ``image_label`` names in the audit."""
    from ..data.detectors import check_detector
    from .api import gallery_finder, identify_faces, open_gallery
    from .pipeline import read_image

    margin = check_margin(margin)
    when = parse_at(at)
    if detector is not None:
        check_detector(detector)
    img = image if hasattr(image, "shape") else read_image(image)
    label = image_label or str(image)
    og = open_gallery(db)
    with og.gallery as g:
        refuse_if_uncalibrated(og, db, label, when, allow_uncalibrated)
        plan = load_plan(plan_path, g.people())
        finder = finder or gallery_finder(og, detector, aligned=aligned)
        faces, matches = identify_faces(og, img, finder, top_k=3)
        decision, reason, person, doses = _decide(plan, faces, matches, og.threshold, margin, when)
        out = {"decision": decision, "reason": reason, "person": person, "at": when.isoformat(),
               "calibration": "real faces" if og.calibrated_on_real_faces else
               "NOT real faces: allowed by --allow-uncalibrated",
               "threshold": og.threshold, "margin_required": margin, "faces": len(faces),
               "scores": matches[0].ranked if len(matches) == 1 else [m.ranked for m in matches], "doses": []}
        with g.transaction() as c:  # the "already given" check and the confirmation are one atomic step
            _record(g, c, og, out, doses, label, when)
    out["model"] = og.model.describe()
    out["threshold_note"] = og.describe_threshold()
    return out


def _record(g: Any, c: Any, og: Any, out: dict[str, Any], doses: list[tuple[Dose, datetime]], image: str,
            when: datetime) -> None:
    """Refuse doses already given, then append the confirmation (one row per dose) or the refusal."""
    common = {"command": "check-dose", "image": image, "scores": out["scores"], "threshold": og.threshold,
              "model_sha256": og.model.sha256, "person": out["person"]}
    if out["decision"] == "confirmed":
        doses, given = _pending(c, out["person"], doses, when)
        out["already_given"] = given
        if not doses:
            out.update(decision="refused", reason="already given: " + "; ".join(
                f"{x['drug']} for {x['slot']} at {x['confirmed_at']}" for x in given))
    if out["decision"] != "confirmed":
        g.audit(c, decision="refused", **common, detail=json.dumps(
            {"reason": out["reason"], "at": when.isoformat(), "calibration": out["calibration"]}))
        return
    for d, s in doses:
        g.audit(c, decision="confirmed", drug=d.drug, slot=s.isoformat(), **common,
                detail=json.dumps({"at": when.isoformat(), "calibration": out["calibration"]}))
        out["doses"].append({"drug": d.drug, "slot": s.isoformat(timespec="minutes")})


def format_dose(r: dict[str, Any]) -> str:
    """The decision line (CONFIRMED ... or REFUSED: why) and the threshold line, control characters escaped."""
    if r["decision"] == "confirmed":
        doses = ", ".join(f"{d['drug']} (slot {d['slot']})" for d in r["doses"])
        first = f"CONFIRMED {r['person']} (score {r['scores'][0][1]:.4f}): give {doses}"
    else:
        first = f"REFUSED: {r['reason']}"
    return "\n".join(map(shown, (first, f"{r['threshold_note']}; model {r['model']}")))


def _confirmed(c: Any, person: str) -> list[tuple[str, datetime, datetime, str]]:
    """(drug key, slot, time given, audit time) of every confirmation for ``person`` (names compared in NFC)."""
    who = unicodedata.normalize("NFC", person)
    out = []
    for rid, name, drug, slot, detail, t in c.execute(
            "SELECT id, person, drug, slot, detail, time FROM audit WHERE decision = 'confirmed' "
            "AND command = 'check-dose'").fetchall():
        if not isinstance(name, str) or unicodedata.normalize("NFC", name) != who:
            continue
        try:
            slot_at = datetime.fromisoformat(slot)
            given_at = _detail_at(detail) or slot_at
            out.append((drug_key(drug), slot_at, given_at, str(t)))
        except (TypeError, ValueError):
            raise UserError(f"gallery damaged: audit row {rid} (a confirmed dose) has an unreadable drug, slot or "
                            "time; the administration log cannot be checked: re-enrol into a new --db and keep "
                            "this file for the record") from None
    return out


def _detail_at(detail: Any) -> datetime | None:
    """When a confirmed dose was given: detail is {"at": ...} (JSON) or, in older galleries, "at ISO"."""
    text = str(detail or "")
    try:
        value = json.loads(text).get("at")
    except (ValueError, AttributeError):
        value = text[3:] if text.startswith("at ") else None
    return datetime.fromisoformat(value) if value else None


def _pending(c: Any, person: str, doses: list[tuple[Dose, datetime]], when: datetime):
    """Per drug, the nearest due slot unless this drug was confirmed already for a due slot or within its
    minimum gap (overlapping windows, an edited plan time or spelling must not let one drug be given twice)."""
    by_drug: dict[str, list[tuple[Dose, datetime]]] = {}
    for d, s in doses:  # nearest first
        by_drug.setdefault(d.key, []).append((d, s))
    history = _confirmed(c, person)
    pending, given = [], []
    for key, slots in by_drug.items():
        gap = slots[0][0].min_gap()
        done = [(prev_slot, t) for k, prev_slot, prev_at, t in history if k == key
                and (abs(when - prev_at) < gap or any(abs(s - prev_slot) < gap for _, s in slots))]
        if done:
            given.append({"drug": slots[0][0].drug, "slot": done[0][0].isoformat(timespec="minutes"),
                          "confirmed_at": done[0][1]})
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
