#!/usr/bin/env python3
"""Generate examples/events.jsonl: one week (2–8 March 2026) of sensor events at
the ACME distribution centre in Utrecht, for examples/agreement.yaml.

Standard library only, fixed seed: running it again gives the same bytes.

Writes, next to this script:
  events.jsonl        the events, one per line (a few lines are deliberately broken)
  expected-drops.txt  "<line-number> <reason>" for every event meant to be dropped

and prints how many events were meant for each outcome.

Every event is built with the outcome it is meant to have. A small independent
model of SPEC 2.1 (classify() below, holding the parts of agreement.yaml that
decide drops) checks each one before anything is written, so the intended
outcomes follow the step order of the SPEC: decode, agreement in force,
prohibited category, special category, approved instrument and its quality,
first matching rule, schedule.

Usage: python3 examples/generate_events.py
"""

import json
from fnmatch import fnmatchcase
import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20260302
HERE = Path(__file__).resolve().parent
AMS = ZoneInfo("Europe/Amsterdam")
CET = timezone(timedelta(hours=1))  # Amsterdam in March 2026 (summer time starts 29 March)
UTC = timezone.utc

# ---------------------------------------------------------------------------
# The parts of examples/agreement.yaml that decide whether an event is dropped.
# Keep in step with the YAML.
# ---------------------------------------------------------------------------
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VALID_UNTIL = datetime(2027, 1, 1, tzinfo=UTC)
PROHIBITED = {
    # built in (SPEC 2.2)
    "emotion", "facial_expression", "racial_ethnic_origin", "political_opinion",
    "religion", "trade_union", "sex_life", "sexual_orientation", "genetic",
    # added by the agreement
    "keystroke_content", "screen_capture", "mood", "stress_level",
}
SPECIAL = {"health", "biometric"}
SPECIAL_ALLOWED = {"health": {"safety"}}  # category -> purposes its exception names
SCHEDULES = {
    # name: (days 0=Mon..6=Sun, from minute, until minute), Europe/Amsterdam
    "working_hours": ({0, 1, 2, 3, 4}, 7 * 60, 19 * 60),
    "warehouse_shifts": ({0, 1, 2, 3, 4, 5}, 6 * 60, 22 * 60),
}
RULES = [
    # (name, sources, categories, during, purposes)
    ("turnstile-clocking", ["access_pass"], ["clocking"], None, ["payroll"]),
    ("door-roll-call", ["access_pass"], ["access"], None, ["safety"]),
    ("lone-worker-alarm", ["tracker", "wearable"], ["alarm"], None, ["safety"]),
    ("heat-stress", ["wearable"], ["health"], None, ["safety"]),
    ("shift-location", ["tracker"], ["location"], "warehouse_shifts", ["planning"]),
    ("pc-activity", ["computer_activity"], ["activity"], "working_hours", ["it_security"]),
]
INSTRUMENTS = [
    # (source, device globs, valid until, {top-level attribute: (min, max)}), in file order
    ("tracker", ["trk-*"], datetime(2027, 6, 30, tzinfo=UTC), {"lat": (52.0, 52.2), "lon": (5.0, 5.25)}),
    ("access_pass", ["rdr-*"], datetime(2027, 12, 31, tzinfo=UTC), {}),
    ("wearable", ["wbl-01??"], datetime(2026, 7, 1, tzinfo=UTC), {}),
    ("computer_activity", ["wpc-*"], datetime(2027, 1, 31, tzinfo=UTC),
     {"active_minutes": (0, 60), "idle_minutes": (0, 60)}),
]

RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text):
    """An RFC 3339 time with an offset, or None."""
    m = RFC3339.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    off = m.group(8)
    if off == "Z":
        tz = UTC
    else:
        sign = 1 if off[0] == "+" else -1
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            return None
        tz = timezone(sign * timedelta(hours=oh, minutes=om))
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=tz)
    except ValueError:
        return None


def classify(line):
    """(outcome, rule): outcome is "forwarded" or a SPEC 2.1 drop reason."""
    # 1. decode
    try:
        ev = json.loads(line)
    except ValueError:
        return "malformed", None
    if not isinstance(ev, dict):
        return "malformed", None
    for field in ("event_id", "source", "subject_id", "category", "occurred_at"):
        if not isinstance(ev.get(field), str):
            return "malformed", None
    if "device_id" in ev and not isinstance(ev["device_id"], str):
        return "malformed", None
    if "attributes" in ev and not isinstance(ev["attributes"], dict):
        return "malformed", None
    at = parse_rfc3339(ev["occurred_at"])
    if at is None:
        return "malformed", None
    # 2. agreement in force
    if not (VALID_FROM <= at < VALID_UNTIL):
        return "agreement_not_in_force", None
    # 3. prohibited category (case-insensitive)
    cat = ev["category"].lower()
    if cat in PROHIBITED:
        return "prohibited_category", None
    # 4. special category without a covering exception (case-insensitive)
    allowed = None
    if cat in SPECIAL:
        allowed = SPECIAL_ALLOWED.get(cat, set())
        if not allowed:
            return "special_category", None
    # 4a. the first instrument for the source and device, still validated
    for source, globs, until, quality in INSTRUMENTS:
        device = ev.get("device_id")
        if source == ev["source"].casefold() and device is not None and any(fnmatchcase(device, g) for g in globs):
            break
    else:
        return "unapproved_instrument", None
    if at >= until:
        return "unapproved_instrument", None
    # 4b. every quality bound met (a missing or non-numeric value fails)
    attrs = ev.get("attributes") or {}
    for path, (lo, hi) in quality.items():
        v = attrs.get(path)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
            return "below_quality", None
    # 5. first rule matching source and category, compared in normal form (SPEC 2.5;
    # the names here differ only in case)
    for name, sources, categories, during, purposes in RULES:
        if ev["source"].casefold() in sources and ev["category"].casefold() in categories:
            break
    else:
        return "no_matching_rule", None
    # 4, second half: the exception narrows the rule's purposes
    if allowed is not None and not set(purposes) & allowed:
        return "special_category", name
    # 6. schedule
    if during:
        days, start, end = SCHEDULES[during]
        local = at.astimezone(AMS)
        minute = local.hour * 60 + local.minute + local.second / 60
        if local.weekday() not in days or not (start <= minute < end):
            return "outside_schedule", name
    return "forwarded", name


# ---------------------------------------------------------------------------
# The site
# ---------------------------------------------------------------------------
rng = random.Random(SEED)

# Zones of the distribution centre and their centres (WGS84, 6 decimals).
ZONES = {
    "dock-A": (52.093420, 5.118650),
    "dock-B": (52.093380, 5.120410),
    "cold-store": (52.092610, 5.123050),
    "mezzanine": (52.091980, 5.121200),
    "shrink-wrap": (52.091520, 5.119080),
    "charging-room": (52.091240, 5.122640),
    "yard": (52.093900, 5.122100),
}
for i in range(1, 25):  # aisles 01..24 in a grid
    ZONES[f"aisle-{i:02d}"] = (
        52.091700 + (i - 1) // 6 * 0.000380,
        5.118900 + (i - 1) % 6 * 0.000620,
    )
AISLES = [z for z in ZONES if z.startswith("aisle-")]
DOORS = [
    ("D01 dock A", "dock-A"), ("D02 dock B", "dock-B"), ("D05 koelcel", "cold-store"),
    ("D07 mezzanine", "mezzanine"), ("D09 laadruimte", "charging-room"),
    ("D11 kantine", "canteen"), ("D12 café terras", "canteen"), ("D14 poort yard", "yard"),
]

# emp-00417, a forklift driver, is the worker the README follows.
ids = [417] + rng.sample([n for n in range(400, 500) if n != 417], 31)
workers = [f"emp-{n:05d}" for n in ids]
drivers = workers[0:10]       # forklift drivers
pickers = workers[10:22]      # order pickers
heat_staff = workers[22:27]   # shrink-wrap tunnel and roof mezzanine
office = workers[27:32]       # planners and administration (shared PCs)
warehouse = drivers + pickers + heat_staff

tracker_of = {w: f"trk-{31 + i:04d}" for i, w in enumerate(drivers + pickers + heat_staff)}
vehicle_of = {w: f"flt-{1 + i:02d}" for i, w in enumerate(drivers)}
wearable_of = {w: f"wbl-{101 + i:04d}" for i, w in enumerate(heat_staff)}
# Two wearable vendors: CoolSense sends flat readings, VitalBand nests them in "vitals".
vendor_of = {w: ("coolsense" if i % 2 == 0 else "vitalband") for i, w in enumerate(heat_staff)}
PCS = [f"wpc-{i:02d}" for i in range(1, 7)]
# Early shift 06:00-14:30, late shift 13:30-22:00; half the warehouse on each this week.
shift_of = {w: ("early" if i % 2 == 0 else "late") for i, w in enumerate(warehouse)}
saturday_crew = [drivers[0], drivers[3], pickers[1], pickers[4], pickers[7], heat_staff[0]]

MON = datetime(2026, 3, 2, tzinfo=CET)
WEEKDAYS = [MON + timedelta(days=d) for d in range(5)]
SATURDAY = MON + timedelta(days=5)
SUNDAY = MON + timedelta(days=6)

counters = {}


def next_id(prefix):
    counters[prefix] = counters.get(prefix, 0) + 1
    return f"{prefix}-{counters[prefix]:06d}"


def fmt(dt, style="cet"):
    """RFC 3339 text in the style a vendor uses."""
    if style == "cet":
        return dt.astimezone(CET).isoformat()
    if style == "cet_ms":
        return dt.astimezone(CET).isoformat(timespec="milliseconds")
    if style == "z":
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "z_ms":
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    raise ValueError(style)


def at_local(day, hh, mm, ss=0):
    return day.replace(hour=hh, minute=mm, second=ss)


def random_time(day, start_min, end_min):
    """A random second in [start, end) minutes after local midnight."""
    s = rng.randrange(start_min * 60, end_min * 60)
    return day + timedelta(seconds=s)


def shift_window(worker, day):
    if day.weekday() == 5:
        return 7 * 60, 15 * 60
    return (6 * 60 + 5, 14 * 60 + 25) if shift_of[worker] == "early" else (13 * 60 + 35, 21 * 60 + 55)


def no_tie(draw, decimals_out, decimals_in):
    """A drawn value whose rounding to decimals_out is not a half-way case, so that
    "half away from zero" in decimal and in binary floating point agree."""
    while True:
        v = round(draw(), decimals_in)
        digits = round(abs(v) * 10 ** decimals_in) % 10 ** (decimals_in - decimals_out)
        if digits != 5 * 10 ** (decimals_in - decimals_out - 1):
            return v


def jitter(zone, spread=0.00018):
    lat, lon = ZONES[zone]
    return (no_tie(lambda: lat + rng.uniform(-spread, spread), 3, 6),
            no_tie(lambda: lon + rng.uniform(-spread, spread), 3, 6))


def event(event_id, source, device_id, subject_id, category, occurred_at, attributes, **extra):
    ev = {"event_id": event_id, "source": source}
    if device_id is not None:
        ev["device_id"] = device_id
    ev["subject_id"] = subject_id
    ev["category"] = category
    ev["occurred_at"] = occurred_at
    ev.update(extra)
    if attributes is not None:
        ev["attributes"] = attributes
    return ev


# Each entry: (sort time or None, line text, intended outcome, note)
entries = []


def add(ev, outcome, note, when=None):
    line = json.dumps(ev, ensure_ascii=False)
    if when is None:
        when = parse_rfc3339(ev["occurred_at"])
    entries.append((when, line, outcome, note))


def add_raw(line, outcome, note):
    entries.append((None, line, outcome, note))


# ---------------------------------------------------------------------------
# Events meant to be forwarded
# ---------------------------------------------------------------------------
def location_event(w, when, style="cet", **over):
    zone = over.pop("zone", None) or (
        rng.choice(AISLES + ["dock-A", "dock-B", "cold-store", "yard"]) if w in drivers
        else rng.choice(AISLES) if w in pickers
        else rng.choice(["shrink-wrap", "mezzanine", "dock-B"])
    )
    lat, lon = jitter(zone)
    attrs = {"lat": lat, "lon": lon, "zone": zone, "accuracy_m": round(rng.uniform(0.4, 3.5), 1)}
    if w in drivers:
        attrs["vehicle"] = vehicle_of[w]
        attrs["speed_kmh"] = round(rng.uniform(0, 14), 1)
        attrs["battery_pct"] = rng.randrange(18, 100)
        attrs["task"] = {"type": rng.choice(["putaway", "replenishment", "loading", "unloading"]),
                         "pallets": rng.randrange(1, 4)}
    else:
        attrs["task"] = {"type": "picking", "order_lines": rng.randrange(3, 40),
                         "wave": f"W{rng.randrange(1, 9)}"}
        attrs["steps_since_last_fix"] = rng.randrange(0, 180)
    attrs.update(over)
    return event(next_id("loc"), "tracker", tracker_of[w], w, "location", fmt(when, style), attrs)


# Tracker locations during the shifts (planning).
for day in WEEKDAYS:
    for w in rng.sample(warehouse, 16):
        s, e = shift_window(w, day)
        add(location_event(w, random_time(day, s, e), rng.choice(["cet", "cet", "z"])),
            "forwarded", "tracker location in shift")
for w in saturday_crew:
    for _ in range(2):
        s, e = shift_window(w, SATURDAY)
        add(location_event(w, random_time(SATURDAY, s, e)), "forwarded", "tracker location, Saturday shift")
# A tracker firmware that puts the wearer's heart rate and a "stress" score inside the task:
# forwarded to planning with both removed from attributes.task.
for w in rng.sample(pickers, 6):
    day = rng.choice(WEEKDAYS)
    s, e = shift_window(w, day)
    ev = location_event(w, random_time(day, s, e))
    ev["attributes"]["task"]["heart_rate"] = rng.randrange(78, 128)
    ev["attributes"]["task"]["stress"] = round(rng.uniform(0.1, 0.9), 2)
    add(ev, "forwarded", "location; health and emotion nested in task are stripped")
# Forklift trackers reporting speed as text: the bucket cannot apply, the field is removed.
for w in drivers[1:3]:
    day = WEEKDAYS[2]
    s, e = shift_window(w, day)
    add(location_event(w, random_time(day, s, e), speed_kmh="n/a"), "forwarded",
        "location; speed_kmh is text, removed and counted")
# An older tracker firmware adds top-level fields the SPEC does not know: removed on output.
for w in pickers[2:4]:
    day = WEEKDAYS[3]
    s, e = shift_window(w, day)
    ev = location_event(w, random_time(day, s, e))
    ev["firmware"] = "4.2.1"
    ev["gps_raw"] = "$GPGGA,091530.00,5205.5102,N,00507.1488,E,1,08,0.9,4.2,M,46.9,M,,*5C"
    add(ev, "forwarded", "location with unknown top-level fields")
# Schedule edges that are inside.
add(location_event(drivers[0], at_local(WEEKDAYS[0], 6, 0, 0)), "forwarded", "location at 06:00:00 local, first second of the shift window")
add(location_event(drivers[2], datetime(2026, 3, 5, 20, 59, 0, tzinfo=UTC), "z"), "forwarded", "location 20:59Z = 21:59 local")
add(location_event(pickers[1], datetime(2026, 3, 7, 5, 30, 0, tzinfo=UTC), "z"), "forwarded", "location Saturday 05:30Z = 06:30 local")

# Clocking at the turnstiles (payroll, identified).
def clocking_event(w, when, direction, fingerprint_reader=False, style="cet"):
    ts = rng.choice(["TS-1", "TS-2"])
    reader = {"id": f"rdr-{ts.lower()}", "firmware": "2.8.4"}
    if fingerprint_reader:
        reader = {"id": f"rdr-{ts.lower()}-fp", "firmware": "3.1.0",
                  "fingerprint": "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/") for _ in range(44)),
                  "match_score": round(rng.uniform(0.9, 0.999), 3)}
    attrs = {"turnstile": ts, "direction": direction, "reader": reader,
             "badge": f"pas-{1000 + workers.index(w)}"}
    return event(next_id("clk"), "access_pass", reader["id"], w, "clocking", fmt(when, style), attrs)


for day in WEEKDAYS + [SATURDAY]:
    crew = saturday_crew[:4] if day == SATURDAY else rng.sample(warehouse + office, 5)
    for w in crew:
        if day == SATURDAY:
            start, end = at_local(day, 6, 50), at_local(day, 15, 5)
        elif w in office:
            start, end = at_local(day, 8, 0), at_local(day, 17, 0)
        elif shift_of[w] == "early":
            start, end = at_local(day, 5, 50), at_local(day, 14, 35)
        else:
            start, end = at_local(day, 13, 20), at_local(day, 22, 5)
        fp = rng.random() < 0.3
        add(clocking_event(w, start + timedelta(seconds=rng.randrange(0, 600)), "in", fp), "forwarded", "clocking in")
        add(clocking_event(w, end + timedelta(seconds=rng.randrange(0, 900)), "out", fp), "forwarded", "clocking out")
# Validity edges that are inside.
add(clocking_event(heat_staff[1], datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), "out", style="z"),
    "forwarded", "clocking at 2026-01-01T00:00:00Z, the first instant of the agreement")
add(clocking_event(drivers[5], datetime(2027, 1, 1, 0, 30, 0, tzinfo=CET), "out"),
    "forwarded", "clocking at 2027-01-01T00:30+01:00 = 2026-12-31T23:30Z, still in force")

# Doors (safety roll-call).
for day in WEEKDAYS:
    for w in rng.sample(warehouse + office, 8):
        door, zone = rng.choice(DOORS)
        s, e = (8 * 60, 17 * 60) if w in office else shift_window(w, day)
        attrs = {"door": door, "direction": rng.choice(["in", "out"]), "zone": zone,
                 "badge": f"pas-{1000 + workers.index(w)}", "reader_temp_c": round(rng.uniform(8, 21), 1)}
        add(event(next_id("acc"), "access_pass", f"rdr-{door[:3].lower()}", w, "access",
                  fmt(random_time(day, s, e)), attrs), "forwarded", "door access")

# Heat stress (health to safety under the exception).
def health_event(w, when):
    zone = rng.choice(["shrink-wrap", "mezzanine"])
    hsi = round(rng.uniform(22, 33), 1)
    hr = rng.randrange(72, 148)
    temp = no_tie(lambda: rng.uniform(36.4, 38.6), 1, 2)
    alarm = hsi >= 30.5 or temp >= 38.2
    if vendor_of[w] == "coolsense":
        attrs = {"zone": zone, "heat_stress_index": hsi, "alarm": alarm, "heart_rate": hr,
                 "body_temperature": temp, "skin_temp_c": round(temp - 2.1, 1),
                 "battery_pct": rng.randrange(20, 100)}
        style = "cet"
    else:
        attrs = {"zone": zone, "heat_stress_index": hsi, "alarm": alarm,
                 "vitals": {"heart_rate": hr, "body_temperature": temp, "spo2": rng.randrange(94, 100),
                            "stress_level": rng.choice(["low", "medium", "high"]),
                            "mood": rng.choice(["calm", "tense", "irritated", "cheerful"])},
                 "mood": rng.choice(["calm", "tense"]), "firmware": "vb-1.9"}
        style = "cet_ms"
    return event(next_id("hlt"), "wearable", wearable_of[w], w, "health", fmt(when, style), attrs)


for day in WEEKDAYS:
    for w in rng.sample(heat_staff, 5):
        s, e = shift_window(w, day)
        add(health_event(w, random_time(day, s, e)), "forwarded", "heat-stress reading")
add(health_event(heat_staff[0], random_time(SATURDAY, 7 * 60, 15 * 60)), "forwarded", "heat-stress reading, Saturday")

# Lone-worker and man-down alarms (safety, any hour).
def alarm_event(w, when, source, alarm_type, zone):
    lat, lon = jitter(zone, 0.00005)
    device = tracker_of[w] if source == "tracker" else wearable_of[w]
    attrs = {"alarm_type": alarm_type, "zone": zone, "lat": lat, "lon": lon,
             "battery_pct": rng.randrange(10, 100)}
    return event(next_id("alm"), source, device, w, "alarm", fmt(when), attrs)


add(alarm_event(drivers[4], at_local(WEEKDAYS[0], 0, 20), "tracker", "lone_worker_timeout", "yard"),
    "forwarded", "alarm Monday 00:20 local = Sunday 23:20Z (pseudonym period 2026-W09)")
add(alarm_event(pickers[5], random_time(WEEKDAYS[1], 9 * 60, 11 * 60), "tracker", "man_down", "aisle-14"),
    "forwarded", "man-down alarm")
add(alarm_event(heat_staff[2], random_time(WEEKDAYS[2], 13 * 60 + 40, 15 * 60), "wearable", "man_down", "shrink-wrap"),
    "forwarded", "man-down alarm from a wearable")
add(alarm_event(heat_staff[3], random_time(WEEKDAYS[3], 15 * 60, 17 * 60), "wearable", "panic_button", "mezzanine"),
    "forwarded", "panic button")
add(alarm_event(drivers[7], random_time(WEEKDAYS[4], 7 * 60, 9 * 60), "tracker", "panic_button", "cold-store"),
    "forwarded", "panic button in the cold store")
add(alarm_event(drivers[0], at_local(SATURDAY, 23, 40), "tracker", "lone_worker_timeout", "yard"),
    "forwarded", "alarm Saturday 23:40 local: no schedule on alarms")

# Activity on the shared PCs (it_security, office hours).
def activity_event(w, when, style="z_ms", extra_session=None):
    active = rng.randrange(0, 61)
    app = rng.choice(["wms", "email", "browser", "office", "label_printing", "erp"])
    session = {"locked": active == 0 and rng.random() < 0.5, "app_category": app,
               "window_title": rng.choice(["WMS - Wave 4 overview", "Inbox - Outlook",
                                           "Rooster week 10.xlsx", "Labels dock B"])}
    if extra_session:
        session.update(extra_session)
    attrs = {"active_minutes": active, "idle_minutes": 60 - active, "app_category": app,
             "host": rng.choice(PCS).upper(), "session": session}
    return event(next_id("pca"), "computer_activity", rng.choice(PCS), w, "activity", fmt(when, style), attrs)


for day in WEEKDAYS:
    for w in rng.sample(office, 5):
        hour = rng.randrange(8, 18)
        when = at_local(day, hour, 0) + timedelta(milliseconds=rng.randrange(0, 900))
        add(activity_event(w, when), "forwarded", "pc activity")
    for w in rng.sample(office, 2):
        hour = rng.randrange(8, 18)
        add(activity_event(w, at_local(day, hour, 0), extra_session={
            "typed_text": rng.choice(["ziekmelding morgen", "wachtwoord123", "re: rooster"]),
            "keylog": "[ctrl]c[ctrl]v"}),
            "forwarded", "pc activity; typed text and window title nested in session are stripped")
add(activity_event(office[0], datetime(2026, 3, 3, 6, 0, 0, tzinfo=UTC), "z"), "forwarded", "activity 06:00Z = 07:00 local, first second of working hours")
add(activity_event(office[1], datetime(2026, 3, 4, 17, 59, 59, tzinfo=UTC), "z"), "forwarded", "activity 17:59:59Z = 18:59:59 local, last second of working hours")

# ---------------------------------------------------------------------------
# Events meant to be dropped, by reason
# ---------------------------------------------------------------------------
# outside_schedule: tracked location when the warehouse is not working, PCs out of hours.
for hh, mm in [(10, 5), (11, 30), (14, 10)]:
    add(location_event(rng.choice(drivers), at_local(SUNDAY, hh, mm)), "outside_schedule", "location on a Sunday")
add(location_event(pickers[6], at_local(WEEKDAYS[1], 23, 10)), "outside_schedule", "location 23:10 local")
add(location_event(drivers[8], at_local(WEEKDAYS[2], 23, 45)), "outside_schedule", "location 23:45 local")
add(location_event(drivers[1], at_local(WEEKDAYS[3], 5, 45)), "outside_schedule", "location 05:45 local")
add(location_event(pickers[3], at_local(WEEKDAYS[4], 22, 0, 0)), "outside_schedule", "location at 22:00:00 local: until is exclusive")
add(location_event(drivers[6], datetime(2026, 3, 4, 21, 15, 0, tzinfo=UTC), "z"), "outside_schedule", "location 21:15Z = 22:15 local")
add(activity_event(office[2], at_local(WEEKDAYS[1], 20, 30)), "outside_schedule", "pc activity 20:30 local")
add(activity_event(office[3], at_local(SATURDAY, 10, 0)), "outside_schedule", "pc activity on Saturday")
add(activity_event(office[4], at_local(SUNDAY, 11, 0)), "outside_schedule", "pc activity on Sunday")
add(activity_event(office[0], datetime(2026, 3, 5, 5, 59, 0, tzinfo=UTC), "z"), "outside_schedule", "pc activity 05:59Z = 06:59 local")
add(activity_event(office[1], datetime(2026, 3, 6, 18, 0, 0, tzinfo=UTC), "z"), "outside_schedule", "pc activity 18:00Z = 19:00 local: until is exclusive")

# prohibited_category: emotion recognition, and what the agreement forbids.
CAMS = ["cam-07", "cam-12", "cam-15"]


def camera_event(w, when, category, attrs, source="camera"):
    return event(next_id("cam"), source, rng.choice(CAMS), w, category, fmt(when, "z_ms"), attrs)


def rnd_weekday_time(start=7 * 60, end=19 * 60):
    return random_time(rng.choice(WEEKDAYS), start, end)


for category, label in [("emotion", "happy"), ("emotion", "angry"), ("emotion", "neutral"),
                        ("Emotion", "sad"), ("facial_expression", "frown"),
                        ("facial_expression", "smile"), ("FACIAL_EXPRESSION", "grimace")]:
    w = rng.choice(warehouse)
    add(camera_event(w, rnd_weekday_time(), category,
                     {"label": label, "confidence": round(rng.uniform(0.5, 0.99), 2), "zone": "dock-A"}),
        "prohibited_category", f"camera {category}")
add(camera_event(rng.choice(drivers), at_local(SUNDAY, 23, 30), "emotion", {"label": "tired", "confidence": 0.71}),
    "prohibited_category", "camera emotion on Sunday night: step 3 comes before any rule or schedule")
for category, attrs in [("mood", {"mood": "tense", "score": 0.62}), ("mood", {"mood": "calm", "score": 0.2}),
                        ("Mood", {"mood": "irritated", "score": 0.81}),
                        ("stress_level", {"stress_level": "high", "hrv_ms": 31}),
                        ("emotion", {"valence": -0.4, "arousal": 0.7})]:
    w = rng.choice(heat_staff)
    add(event(next_id("wbl"), "wearable", wearable_of[w], w, category,
              fmt(rnd_weekday_time(8 * 60, 14 * 60), "cet_ms"), attrs),
        "prohibited_category", f"wearable {category}")
for text in ["Beste Jan, morgen ben ik er niet", "wachtwoord: Zomer2026!", "ctrl+c ctrl+v"]:
    w = rng.choice(office)
    add(event(next_id("pca"), "computer_activity", rng.choice(PCS), w, "keystroke_content",
              fmt(rnd_weekday_time(8 * 60, 17 * 60), "z_ms"), {"typed_text": text, "app_category": "email"}),
        "prohibited_category", "keystroke content")
w = rng.choice(office)
add(event(next_id("pca"), "computer_activity", rng.choice(PCS), w, "screen_capture",
          fmt(rnd_weekday_time(8 * 60, 17 * 60), "z_ms"), {"screenshot": "iVBORw0KGgoAAAANSUhEUgAA", "format": "png"}),
    "prohibited_category", "screen capture")
add(event(next_id("ohs"), "occupational_health", None, rng.choice(warehouse), "genetic",
          fmt(rnd_weekday_time(9 * 60, 12 * 60)), {"panel": "pharmacogenomic", "dna": "rs4244285:AG"}),
    "prohibited_category", "genetic data from an unknown source: step 3 before rule matching")

# special_category: biometric data, for which there is no exception.
w = rng.choice(heat_staff)
add(event(next_id("wbl"), "wearable", wearable_of[w], w, "biometric", fmt(rnd_weekday_time(), "cet_ms"),
          {"voiceprint": "vp1:8f2c0a9e41d7", "purpose_hint": "wearer verification"}),
    "special_category", "wearable voiceprint")
w = rng.choice(heat_staff)
add(event(next_id("wbl"), "wearable", wearable_of[w], w, "biometric", fmt(rnd_weekday_time(), "cet_ms"),
          {"ecg_signature": "ecg1:51ab77", "heart_rate": 88}),
    "special_category", "wearable ECG identity")
add(event(next_id("wbl"), "wearable", wearable_of[heat_staff[4]], heat_staff[4], "biometric",
          fmt(at_local(SUNDAY, 23, 10), "cet_ms"), {"voiceprint": "vp1:0c0ffee"}),
    "special_category", "biometric on Sunday night: step 4 before rules and schedules")
for category in ["Biometric", "Biometric", "biometric"]:
    w = rng.choice(warehouse)
    add(event(next_id("clk"), "access_pass", "rdr-ts-1-fp", w, category, fmt(rnd_weekday_time(6 * 60, 9 * 60)),
              {"fingerprint": "FP3:" + "".join(rng.choice("0123456789abcdef") for _ in range(24)), "turnstile": "TS-1"}),
        "special_category", f"turnstile fingerprint template ({category})")
w = rng.choice(office)
add(event(next_id("pca"), "computer_activity", rng.choice(PCS), w, "biometric", fmt(rnd_weekday_time(8 * 60, 17 * 60), "z_ms"),
          {"face_template": "ft2:9d1e44a0", "method": "windows_hello"}),
    "special_category", "face unlock template from the PC agent")
add(camera_event(rng.choice(warehouse), rnd_weekday_time(), "biometric", {"face_template": "ft2:77a0c3"}),
    "special_category", "camera face template")
add(camera_event(rng.choice(warehouse), rnd_weekday_time(), "BIOMETRIC", {"iris_template": "ir1:aa01"}, source="face_reader"),
    "special_category", "unknown source, BIOMETRIC: step 4 before rule matching")

# no_matching_rule: nothing in the agreement covers it.
for _ in range(3):
    add(camera_event(rng.choice(warehouse), rnd_weekday_time(), "video",
                     {"clip": f"s3://cctv/dock-a/{rng.randrange(10**6):06d}.mp4", "seconds": 30}),
        "unapproved_instrument", "camera video: no camera is an approved instrument")
add(camera_event(rng.choice(warehouse), rnd_weekday_time(), "occupancy", {"zone": "canteen", "people": 14}),
    "unapproved_instrument", "camera occupancy: no camera is an approved instrument")
add(event(next_id("vnd"), "vending_machine", "vm-kantine-1", rng.choice(workers), "purchase",
          fmt(rnd_weekday_time()), {"item": "koffie", "price_eur": 0.6}),
    "unapproved_instrument", "unknown source vending_machine: not an approved instrument")
add(event(next_id("lkr"), "smart_locker", "lkr-03", rng.choice(workers), "access",
          fmt(rnd_weekday_time()), {"locker": 117, "action": "open"}),
    "unapproved_instrument", "unknown source smart_locker: not an approved instrument")
add(event(next_id("acc"), "access-pass", "rdr-d01", rng.choice(warehouse), "access",
          fmt(rnd_weekday_time()), {"door": "D01 dock A", "direction": "in"}),
    "unapproved_instrument", "source access-pass (hyphen): no instrument is for it")
ev = location_event(pickers[0], random_time(WEEKDAYS[1], 9 * 60, 12 * 60))
ev["source"] = "Tracker"
add(ev, "forwarded", "source Tracker: names compare in normal form (SPEC 2.5), so the tracker instrument and rule take it")
ev = location_event(pickers[8], random_time(WEEKDAYS[2], 9 * 60, 12 * 60))
ev["category"] = "Location"
add(ev, "forwarded", "category Location: names compare in normal form (SPEC 2.5), so the location rule takes it")
add(event(next_id("loc"), "tracker", tracker_of[drivers[9]], drivers[9], "temperature",
          fmt(random_time(WEEKDAYS[3], 7 * 60, 13 * 60)), {"zone": "cold-store", "ambient_c": -21.5}),
    "below_quality", "tracker ambient temperature: no position, so the tag's quality bounds fail (4b before 5)")
for _ in range(2):
    w = rng.choice(heat_staff)
    add(event(next_id("wbl"), "wearable", wearable_of[w], w, "heart_rate",
              fmt(rnd_weekday_time(8 * 60, 14 * 60), "cet_ms"), {"bpm": rng.randrange(70, 130)}),
        "no_matching_rule", "wearable category heart_rate: not a special category name, and no rule lists it")
w = heat_staff[1]
add(event(next_id("hlt"), "wearable", wearable_of[w], w, "Health",
          fmt(rnd_weekday_time(8 * 60, 14 * 60), "cet_ms"), {"heat_stress_index": 27.5, "zone": "mezzanine"}),
    "forwarded", "category Health: names compare in normal form (SPEC 2.5), so the exception and the health rule take it")
add(event(next_id("acc"), "access_pass", "rdr-rec", "visitor-0093", "visitor",
          fmt(rnd_weekday_time()), {"host": office[0], "company": "Koeltechniek Zuid"}),
    "no_matching_rule", "visitor pass: no rule")
add(event(next_id("pca"), "computer_activity", rng.choice(PCS), rng.choice(office), "app_usage",
          fmt(rnd_weekday_time(8 * 60, 17 * 60), "z_ms"), {"app": "excel.exe", "minutes": 42}),
    "below_quality", "computer_activity app_usage: no active_minutes, so the agent's quality bounds fail (4b before 5)")

# agreement_not_in_force: outside [2026-01-01T00:00Z, 2027-01-01T00:00Z).
add(location_event(drivers[2], datetime(2025, 12, 31, 23, 59, 59, tzinfo=CET)), "agreement_not_in_force",
    "2025-12-31T23:59:59+01:00")
add(clocking_event(pickers[9], datetime(2026, 1, 1, 0, 30, 0, tzinfo=CET), "out"), "agreement_not_in_force",
    "2026-01-01T00:30+01:00 = 2025-12-31T23:30Z, before valid_from")
add(health_event(heat_staff[2], datetime(2025, 11, 14, 10, 12, 0, tzinfo=CET)), "agreement_not_in_force", "November 2025")
add(event(next_id("cam"), "camera", "cam-07", rng.choice(warehouse), "emotion", "2025-10-02T09:00:00+02:00",
          {"label": "bored"}), "agreement_not_in_force", "2025 and emotion: step 2 before step 3")
add(clocking_event(drivers[3], datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC), "in", style="z"), "agreement_not_in_force",
    "2027-01-01T00:00:00Z: valid_until is exclusive")
add(activity_event(office[2], datetime(2027, 2, 3, 10, 0, 0, tzinfo=CET), "cet"), "agreement_not_in_force", "February 2027")
add(event(next_id("clk"), "access_pass", "rdr-ts-1-fp", rng.choice(warehouse), "biometric", "2025-06-18T14:00:00+02:00",
          {"fingerprint": "FP3:00aa11bb"}), "agreement_not_in_force", "2025 and biometric: step 2 before step 4")
add(location_event(pickers[10], datetime(2024, 3, 5, 10, 0, 0, tzinfo=CET)), "agreement_not_in_force",
    "tracker clock reset to 2024")
add(location_event(pickers[11], datetime(2027, 3, 3, 10, 0, 0, tzinfo=CET)), "agreement_not_in_force",
    "tracker clock a year ahead")

# malformed: undecodable, missing or wrongly typed required fields, bad times.
def ok_base(**over):
    w = rng.choice(pickers)
    base = {"event_id": next_id("loc"), "source": "tracker", "device_id": tracker_of[w], "subject_id": w,
            "category": "location", "occurred_at": fmt(rnd_weekday_time(8 * 60, 14 * 60)),
            "attributes": {"lat": 52.092531, "lon": 5.120114, "zone": "aisle-09"}}
    for k, v in over.items():
        if v is DELETE:
            del base[k]
        else:
            base[k] = v
    return base


DELETE = object()
MALFORMED = [
    ("this is not json", "not JSON at all"),
    (json.dumps(ok_base())[:97], "a truncated line"),
    ("[" + json.dumps(ok_base()) + "]", "a JSON array, not an object"),
    ("{}", "an empty object"),
    ("null", "JSON null"),
    ('{"event_id": "loc-900001", "source": "tracker", "subject_id": "emp-00417", "category": "location", '
     '"occurred_at": "2026-03-03T10:00:00+01:00",}', "a trailing comma"),
    (json.dumps(ok_base(subject_id={"id": "emp-00417", "type": "employee"})), "subject_id is an object"),
    (json.dumps(ok_base(subject_id=None)), "subject_id is null"),
    (json.dumps(ok_base(event_id=48213)), "event_id is a number"),
    (json.dumps(ok_base(category=["location"])), "category is an array"),
    (json.dumps(ok_base(event_id=DELETE)), "event_id is missing"),
    (json.dumps(ok_base(category=DELETE)), "category is missing"),
    (json.dumps(ok_base(occurred_at="2026-03-03T10:00:00")), "occurred_at without an offset"),
    (json.dumps(ok_base(occurred_at="2025-12-31T10:00:00")), "2025 and no offset: step 1 before step 2"),
    (json.dumps(ok_base(occurred_at="yesterday 14:00")), "occurred_at is not a time"),
    (json.dumps(ok_base(occurred_at="2026-02-30T10:00:00+01:00")), "occurred_at 30 February"),
    (json.dumps(ok_base(occurred_at="2026-03-04T25:10:00+01:00")), "occurred_at hour 25"),
    (json.dumps(ok_base(occurred_at=1772528400)), "occurred_at as a Unix number"),
    (json.dumps({"event_id": "cam-900002", "source": "camera", "device_id": "cam-07", "category": "emotion",
                 "occurred_at": "2026-03-04T11:00:00Z", "attributes": {"label": "angry"}}),
     "emotion without subject_id: step 1 before step 3"),
]
for line, note in MALFORMED:
    add_raw(line, "malformed", note)

# ---------------------------------------------------------------------------
# Order: the well-formed events by time; the undated lines scattered among them.
# ---------------------------------------------------------------------------
dated = sorted((e for e in entries if e[0] is not None), key=lambda e: (e[0], e[1]))
undated = [e for e in entries if e[0] is None]
# Replayed events from other years arrive late, among this week's traffic.
in_week = [e for e in dated if datetime(2026, 3, 1, tzinfo=UTC) <= e[0] < datetime(2026, 3, 10, tzinfo=UTC)]
stray = [e for e in dated if e not in in_week]
ordered = list(in_week)
for e in stray + undated:
    ordered.insert(rng.randrange(1, len(ordered)), e)

# Instruments (SPEC 2.6), appended after the week so that the lines above keep their
# numbers: a tag nobody approved, a tracker with no device id, a fix off the site, an
# agent's impossible reading, a band outside the approved series, and an approved
# band after its validation expired.
def appended(eid, source, device, category, at, attributes, outcome, note):
    ev = {"event_id": eid, "source": source}
    if device is not None:
        ev["device_id"] = device
    ev.update({"subject_id": "emp-00417", "category": category, "occurred_at": at, "attributes": attributes})
    ordered.append((parse_rfc3339(at), json.dumps(ev, ensure_ascii=False), outcome, note))


appended("ins-000001", "tracker", "gps-0007", "location", "2026-03-03T10:15:00+01:00",
         {"zone": "dock-A", "lat": 52.09342, "lon": 5.11865, "accuracy_m": 8.0},
         "unapproved_instrument", "a GPS logger: not an approved instrument")
appended("ins-000002", "tracker", None, "location", "2026-03-03T10:16:00+01:00",
         {"zone": "dock-A", "lat": 52.09342, "lon": 5.11865, "accuracy_m": 1.0},
         "unapproved_instrument", "no device_id, and the tag instrument lists devices")
appended("ins-000003", "tracker", "trk-0031", "location", "2026-03-03T10:17:00+01:00",
         {"zone": "dock-A", "lat": 52.59342, "lon": 5.11865, "accuracy_m": 1.0},
         "below_quality", "a fix 55 km off the site: outside the tag's quality bounds")
appended("ins-000004", "computer_activity", "wpc-02", "activity", "2026-03-03T11:00:00+01:00",
         {"app_category": "office", "active_minutes": 75, "idle_minutes": 0, "session": "s-1", "host": "wpc-02"},
         "below_quality", "75 active minutes in an hour: outside the agent's quality bounds")
appended("ins-000005", "computer_activity", "wpc-02", "activity", "2026-03-03T12:00:00+01:00",
         {"app_category": "office", "active_minutes": "most", "idle_minutes": 0, "session": "s-1", "host": "wpc-02"},
         "below_quality", "a non-numeric reading fails a quality bound")
appended("ins-000006", "wearable", "wbl-0200", "health", "2026-03-03T12:30:00+01:00",
         {"zone": "mezzanine", "alarm": False, "heat_stress_index": 24.0},
         "unapproved_instrument", "a band outside the approved series wbl-01??")
appended("ins-000007", "wearable", "wbl-0101", "health", "2026-07-01T12:30:00+02:00",
         {"zone": "mezzanine", "alarm": False, "heat_stress_index": 24.0},
         "unapproved_instrument", "an approved band after its validation expired (2026-07-01)")
appended("ins-000008", "wearable", "wbl-0101", "health", "2026-06-30T23:59:59Z",
         {"zone": "mezzanine", "alarm": True, "heat_stress_index": 31.0},
         "forwarded", "the same band the second before its validation expires")

# Check every intended outcome against the model of SPEC 2.1.
problems = []
for n, (_, line, outcome, note) in enumerate(ordered, 1):
    got, _rule = classify(line)
    if got != outcome:
        problems.append(f"line {n}: meant {outcome}, SPEC 2.1 gives {got} ({note})")
if problems:
    sys.exit("\n".join(problems))

ids_seen = {}
for n, (_, line, outcome, _note) in enumerate(ordered, 1):
    if outcome != "malformed":
        eid = json.loads(line)["event_id"]
        if eid in ids_seen:
            sys.exit(f"duplicate event_id {eid} on lines {ids_seen[eid]} and {n}")
        ids_seen[eid] = n

with open(HERE / "events.jsonl", "w", encoding="utf-8", newline="\n") as f:
    for _, line, _, _ in ordered:
        f.write(line + "\n")
with open(HERE / "expected-drops.txt", "w", encoding="utf-8", newline="\n") as f:
    for n, (_, _, outcome, _) in enumerate(ordered, 1):
        if outcome != "forwarded":
            f.write(f"{n} {outcome}\n")

# Summary.
REASONS = ["malformed", "agreement_not_in_force", "prohibited_category", "special_category",
           "unapproved_instrument", "below_quality", "no_matching_rule", "outside_schedule"]
rules_count = {}
for _, line, outcome, _ in ordered:
    if outcome == "forwarded":
        rule = classify(line)[1]
        rules_count[rule] = rules_count.get(rule, 0) + 1
print(f"events: {len(ordered)}")
print(f"forwarded: {sum(rules_count.values())}")
for name, *_ in RULES:
    print(f"  rule {name}: {rules_count.get(name, 0)}")
for reason in REASONS:
    print(f"{reason}: {sum(1 for e in ordered if e[2] == reason)}")
