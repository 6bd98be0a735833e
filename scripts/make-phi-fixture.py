#!/usr/bin/env python3
"""Write tests/fixtures/phi_labelled.jsonl: synthetic clinical notes with gold PHI spans.

Each line is {"id", "offsets": "utf8-bytes", "text", "spans": [{"start", "end", "kind"}]}.
Offsets are UTF-8 byte offsets (some names and units are non-ASCII on purpose), so the Rust
side can slice `&text[start..end]` directly. Standard library only; the seed fixes the output.

This generator is written independently of the Rust detector: it has its own name lists, date
formats and layouts, and it plants many look-alikes that are not PHI (doses, blood pressures,
lab values, eponyms, departments, room numbers, years of history, ages of 89 and under).

Labelling conventions:
- name: the person's name only, without title or credential ("Dr. [Anne Patel], MD").
- date: the whole date expression; a bare year ("in 2019") is not PHI under Safe Harbor.
- age: only the number, and only when it is over 89 ("a [92]-year-old").
- address: street line through city, state and ZIP when present.
- id, phone, email: the value without its label.
"""

import json
import random
import string
import sys
from pathlib import Path

SEED = 20240314
N_NOTES = 420

FIRST = [
    "James", "Maria", "Wei", "Aisha", "Olumide", "Priya", "José", "Siobhan", "Dmitri", "Hannah",
    "Kwame", "Mei", "Ahmed", "Fatima", "Lucas", "Chloe", "Rajesh", "Ngozi", "Søren", "Ingrid",
    "Carlos", "Yuki", "Tariq", "Grace", "Mateo", "Leila", "Noah", "Zoë", "Omar", "Elena",
    "Margaret", "Robert", "Linda", "Thomas", "Dorothy", "Harold", "Beatrice", "Eugene", "Rosa",
    "Samuel", "Imani", "Declan", "Anjali", "Bogdan", "Marisol", "Theodore", "Willa", "Ezra",
]
LAST = [
    "Smith", "Patel", "Nguyen", "Okafor", "Garcia", "O'Brien", "McAllister", "Kowalski", "Johnson",
    "Brown", "Young", "Hale", "Stone", "Rivers", "Fields", "Hill", "Wood", "King", "Rose", "Bell",
    "Moore", "Parker", "Chen", "Kim", "Singh", "Haddad", "Abernathy", "Lindqvist", "Fitzgerald",
    "Delacroix", "Tanaka", "Mbeki", "Hughes", "Reyes", "Costa", "Novak", "Schmidt", "Rossi",
    "Ivanova", "Washington", "Graves", "Foley", "Smith-Jones", "Álvarez", "DeLuca", "Oyelaran",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
MON_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
STREETS = ["Oak", "Elm", "Maple", "Cedar", "Main", "Lincoln", "Park", "Lakeview", "Sunset",
           "Hillcrest", "Church", "Mill", "River", "Spring", "Willow", "Chestnut", "Highland",
           "Orchard", "Pine Ridge", "Martin Luther King Jr."]
SUFFIX = ["Street", "St.", "St", "Avenue", "Ave", "Ave.", "Road", "Rd", "Boulevard", "Blvd",
          "Drive", "Dr.", "Lane", "Ln", "Court", "Ct", "Way", "Place", "Terrace", "Circle"]
CITIES = ["Springfield", "Riverside", "Fairview", "Greenville", "Madison", "Oakland", "Salem",
          "Franklin", "Clinton", "Georgetown", "Bristol", "Ashland", "Dover", "Lake Forest"]
STATES = ["IL", "CA", "NY", "TX", "OH", "MA", "WA", "GA", "PA", "MN", "OR", "NC"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "mercyhealth.org", "example.net",
           "uhcare.org", "clinic-north.com"]
DEPARTMENTS = ["Cardiology", "Nephrology", "Physical Therapy", "Internal Medicine", "Neurology",
               "Gastroenterology", "Social Work", "Oncology", "Endocrinology", "Pulmonology"]
DRUGS = [("Tylenol", "650 mg"), ("Lasix", "40 mg IV"), ("Metoprolol Tartrate", "25 mg"),
         ("Lisinopril", "10 mg"), ("Atorvastatin", "80 mg"), ("Coumadin", "5 mg"),
         ("Keppra", "500 mg"), ("Eliquis", "5 mg"), ("Norco", "5/325 mg"), ("Percocet", "5/325 mg"),
         ("Heparin", "5,000 units SC"), ("Insulin Glargine", "22 units"), ("Zosyn", "3.375 g"),
         ("Vancomycin", "1,250 mg"), ("Prednisone", "40 mg"), ("Levothyroxine", "88 µg")]
EPONYMS = ["Parkinson disease", "Crohn's disease", "a Foley catheter", "Alzheimer dementia",
           "Hodgkin lymphoma", "Bell's palsy", "Graves disease", "Cushing syndrome",
           "a Swan-Ganz catheter", "a Whipple procedure", "Hashimoto thyroiditis",
           "Guillain-Barré syndrome", "a Nissen fundoplication", "Barrett esophagus"]


class Note:
    """Text under construction plus gold spans in UTF-8 byte offsets."""

    def __init__(self):
        self.parts = []
        self.spans = []
        self.pos = 0

    def add(self, text, kind=None):
        if kind is not None:
            self.spans.append({"start": self.pos, "end": self.pos + len(text.encode()), "kind": kind})
        self.parts.append(text)
        self.pos += len(text.encode())

    def extend(self, segments):
        for text, kind in segments:
            self.add(text, kind)

    def text(self):
        return "".join(self.parts)


def fill(rng, template, slots):
    """Expand {slot} fields of a template into (text, kind) segments."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        if literal:
            out.append((literal, None))
        if field is not None:
            out.extend(slots[field](rng))
    return out


# ---------------------------------------------------------------- PHI values

def person(rng, style=None):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    style = style or rng.choice(["full", "full", "full", "last", "initial", "middle"])
    if style == "last":
        return last
    if style == "initial":
        return f"{first[0]}. {last}"
    if style == "middle":
        return f"{first} {rng.choice(string.ascii_uppercase)}. {last}"
    return f"{first} {last}"


def date(rng, with_year=True):
    y = rng.randint(1930, 2024) if rng.random() < 0.3 else rng.randint(2015, 2024)
    m, d = rng.randint(1, 12), rng.randint(1, 28)
    forms = [
        f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{m}/{d}/{y}", f"{y}-{m:02d}-{d:02d}",
        f"{MONTHS[m - 1]} {d}, {y}", f"{MON_ABBR[m - 1]} {d}, {y}", f"{d} {MON_ABBR[m - 1]} {y}",
        f"{d} {MONTHS[m - 1]} {y}", f"{d:02d}-{MON_ABBR[m - 1]}-{y}", f"{m:02d}-{d:02d}-{y}",
        f"{MONTHS[m - 1]} {y}",
    ]
    if not with_year:
        forms = [f"{MON_ABBR[m - 1]} {d}", f"{MONTHS[m - 1]} {d}", f"{MONTHS[m - 1]} {d}th"
                 if d not in (1, 2, 3, 21, 22, 23) else f"{MONTHS[m - 1]} {d}"]
    return rng.choice(forms)


def mrn(rng):
    return rng.choice([
        str(rng.randint(1_000_000, 99_999_999)),
        f"{rng.randint(0, 99_999_999):08d}",
        f"{rng.choice('ABCDEFGHKMX')}{rng.randint(1_000_000, 9_999_999)}",
    ])


def ssn(rng):
    return f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"


def account(rng):
    return rng.choice([
        str(rng.randint(100_000_000, 9_999_999_999)),
        f"{rng.randint(1000, 9999)}-{rng.randint(100000, 999999)}",
        f"{''.join(rng.choice(string.ascii_uppercase) for _ in range(3))}{rng.randint(10**8, 10**9 - 1)}",
    ])


def phone(rng):
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice([
        f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}",
        f"+1-{a}-{b}-{c:04d}", f"1-{a}-{b}-{c:04d}", f"({a}){b}-{c:04d}",
    ])


def email(rng):
    first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
    first = first.encode("ascii", "ignore").decode() or "pat"
    last = "".join(ch for ch in last if ch.isascii() and ch.isalpha()) or "doe"
    user = rng.choice([f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}", f"{last}_{first}"])
    return f"{user}@{rng.choice(DOMAINS)}"


def address(rng, full=None):
    street = f"{rng.randint(1, 9899)} "
    if rng.random() < 0.25:
        street += rng.choice(["N ", "S ", "E ", "W ", "North ", "West "])
    street += f"{rng.choice(STREETS)} {rng.choice(SUFFIX)}"
    if rng.random() < 0.3:
        street += rng.choice([", Apt 3", ", Apt. 12B", ", Unit 4", ", Suite 210", " #5"])
    full = rng.random() < 0.6 if full is None else full
    if full:
        street += f", {rng.choice(CITIES)}, {rng.choice(STATES)} {rng.randint(10000, 99999)}"
        if rng.random() < 0.2:
            street += f"-{rng.randint(1000, 9999)}"
    return street


def old_age(rng):
    return str(rng.randint(90, 104))


def young_age(rng):
    return str(rng.randint(19, 89))


# ---------------------------------------------------------------- slots

def seg(kind, fn):
    return lambda rng: [(fn(rng), kind)]


def titled(titles):
    def make(rng):
        return [(rng.choice(titles) + " ", None), (person(rng), "name")]
    return make


def age_phrase(rng):
    """An age, PHI only when over 89; the whole phrase varies in form."""
    old = rng.random() < 0.45
    n = old_age(rng) if old else young_age(rng)
    kind = "age" if old else None
    pre, post = rng.choice([("a ", "-year-old"), ("a ", " year old"), ("", " y/o"), ("", " yo"),
                            ("", " years old"), ("age ", ""), ("aged ", ""), ("", "-yo")])
    return [(pre, None), (n, kind), (post, None)]


def negative(rng):
    drug, dose = rng.choice(DRUGS)
    return [(rng.choice([
        f"BP {rng.randint(95, 180)}/{rng.randint(50, 105)}, HR {rng.randint(55, 120)}, SpO2 {rng.randint(88, 100)}% on {rng.randint(1, 4)}L",
        f"{drug} {dose} {rng.choice(['daily', 'BID', 'q6h PRN', 'at bedtime'])}",
        f"take 1/2 tablet of {drug} twice daily",
        f"pain {rng.randint(1, 9)}/10",
        f"history of {rng.choice(EPONYMS)} since {rng.randint(1975, 2022)}",
        f"Glasgow Coma Scale {rng.randint(9, 15)}",
        f"WBC {rng.randint(3, 18)}.{rng.randint(0, 9)}, Hgb {rng.randint(7, 16)}.{rng.randint(0, 9)}, platelets {rng.randint(90, 450)},000",
        f"creatinine {rng.randint(0, 4)}.{rng.randint(0, 9)} mg/dL, INR {rng.randint(1, 3)}.{rng.randint(0, 9)}",
        f"follow up with {rng.choice(DEPARTMENTS)} in {rng.randint(1, 6)} weeks",
        f"temperature {rng.randint(36, 39)}.{rng.randint(0, 9)} °C",
        f"Room {rng.randint(100, 9999)}, bed {rng.choice('AB')}",
        f"strength {rng.randint(3, 5)}/5 in the {rng.choice(['left', 'right'])} upper extremity",
        f"a {rng.randint(1, 4)}/6 systolic murmur",
        f"ejection fraction {rng.randint(20, 65)}%",
        f"HbA1c {rng.randint(5, 12)}.{rng.randint(0, 9)}% in {rng.randint(2010, 2023)}",
        f"heparin drip at {rng.randint(8, 18)} units/kg/hr",
        f"24/7 supervision recommended",
        f"ICD-10 {rng.choice(['I50.9', 'E11.65', 'N17.9', 'J18.9', 'I48.91'])}",
        f"{rng.choice(['cholecystectomy', 'appendectomy', 'CABG', 'hip replacement'])} in {rng.randint(1970, 2021)}",
        f"Apgar scores {rng.randint(6, 9)}/{rng.randint(8, 10)}",
        f"{rng.randint(2, 4)} East step-down unit",
        f"lipase {rng.randint(20, 2500)} U/L",
        f"sodium {rng.randint(125, 148)}, potassium {rng.randint(3, 5)}.{rng.randint(0, 9)}",
    ]), None)]


SLOTS = {
    "name": seg("name", person),
    "date": seg("date", date),
    "mdate": seg("date", lambda rng: date(rng, with_year=False)),
    "mrn": seg("id", mrn),
    "ssn": seg("id", ssn),
    "acct": seg("id", account),
    "phone": seg("phone", phone),
    "email": seg("email", email),
    "addr": seg("address", address),
    "addr_full": seg("address", lambda rng: address(rng, full=True)),
    "oldage": seg("age", old_age),
    "age": age_phrase,
    "dr": titled(["Dr."]),
    "mr": titled(["Mr.", "Mrs.", "Ms.", "Miss"]),
    "staff": titled(["Nurse", "Prof.", "Dr."]),
    "neg": negative,
    "dept": lambda rng: [(rng.choice(DEPARTMENTS), None)],
    "eponym": lambda rng: [(rng.choice(EPONYMS), None)],
    "drug": lambda rng: [("{} {}".format(*rng.choice(DRUGS)), None)],
    "year": lambda rng: [(str(rng.randint(1985, 2023)), None)],
    "relation": lambda rng: [(rng.choice(["wife", "husband", "daughter", "son", "sister", "brother"]) + " ", None),
                             (rng.choice([rng.choice(FIRST), person(rng, "full")]), "name")],
    "caps_name": seg("name", lambda rng: rng.choice([
        f"{rng.choice(LAST).upper()}, {rng.choice(FIRST).upper()}",
        f"{rng.choice(FIRST).upper()} {rng.choice(LAST).upper()}"])),
    "last_first": seg("name", lambda rng: f"{rng.choice(LAST)}, {rng.choice(FIRST)}"),
    "first": seg("name", lambda rng: rng.choice(FIRST)),
    "monthyear": seg("date", lambda rng: rng.choice([
        f"{rng.randint(1, 12):02d}/{rng.randint(2015, 2024)}",
        f"{rng.choice(MONTHS)} {rng.randint(2015, 2024)}"])),
    "lastname": seg("name", lambda rng: rng.choice(LAST)),
    "dotdate": seg("date", lambda rng: rng.choice([
        f"{rng.randint(1, 12):02d}.{rng.randint(1, 28):02d}.{rng.randint(2015, 2024)}",
        f"{rng.randint(2015, 2024)}/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}",
        f"{rng.randint(1, 28)}th {rng.choice(MONTHS)} {rng.randint(2015, 2024)}",
        f"{rng.choice(MON_ABBR)}. {rng.randint(4, 20)}th"])),
    "sexage": lambda rng: rng.choice([
        [(old_age(rng), "age"), (rng.choice(["F", "M", " F", " M", "-year-old F"]), None)],
        [(young_age(rng), None), (rng.choice(["F", "M", " F", " M"]), None)]]),
    "accession": seg("id", lambda rng: f"S{rng.randint(18, 24)}-{rng.randint(10000, 99999)}"),
    "addr_postdir": seg("address", lambda rng: f"{rng.randint(10, 4999)} {rng.choice(STREETS)} "
                        f"{rng.choice(['Avenue', 'Street', 'St'])} {rng.choice(['NW', 'SE', 'NE', 'SW'])}, "
                        f"{rng.choice(CITIES)}, {rng.choice(STATES)} {rng.randint(10000, 99999)}"),
    "ext": lambda rng: [(str(rng.randint(100, 9999)), "phone")],
    "shortdate": seg("date", lambda rng: f"{rng.randint(1, 12)}/{rng.randint(1, 28)}"),
    "sig_cred": lambda rng: [(person(rng, rng.choice(["full", "middle"])), "name"),
                             (rng.choice([", MD", ", RN", ", NP", " MD", ", PA-C", ", DO"]), None)],
}


# ---------------------------------------------------------------- note layouts

HEADER_LINES = [
    "Patient: {name}\n", "Name: {name}\n", "Patient Name: {name}\n", "MRN: {mrn}\n",
    "Medical Record #: {mrn}\n", "DOB: {date}\n", "Date of Birth: {date}\n", "SSN: {ssn}\n",
    "Account No: {acct}\n", "Admission Date: {date}\n", "Discharge Date: {date}\n",
    "Attending: {sig_cred}\n", "Attending: {dr}\n", "PCP: {dr}\n", "Phone: {phone}\n",
    "Address: {addr_full}\n", "Insurance Member ID: {acct}\n", "PATIENT: {caps_name}\n",
    "Name: {last_first}\n", "Unit No: {mrn}\n", "MRN#{mrn}\n",
]
NARRATIVE = [
    "The patient is {age} with {eponym} and a history of {neg}. ",
    "{mr} presented to the Emergency Department on {date} with three days of dyspnea. ",
    "On arrival vitals were {neg}; labs showed {neg}. ",
    "She was seen by {dr} of {dept}, who recommended {drug} daily. ",
    "Home medications include {drug}, {drug} and {neg}. ",
    "PCP {dr} was updated by phone at {phone}. ",
    "Family history is notable for {eponym} in her mother. ",
    "His {relation} is the health care proxy and can be reached at {phone}. ",
    "The patient lives at {addr} with her {relation}. ",
    "Echocardiogram on {date} showed {neg}. ",
    "He was diagnosed with {eponym} in {year} and has been stable since. ",
    "Medication name: Atorvastatin. Name of procedure: Laparoscopic Cholecystectomy. ",
    "Last colonoscopy {mdate} was unremarkable. ",
    "Plan discussed with {relation} at bedside; {neg}. ",
    "Per the Dr. on call overnight, {neg}. ",
    "Patient is a {oldage}-year-old widow who was independent until {date}. ",
    "She reports she is aged {oldage} and still drives. ",
    "Nursing notes: {neg}, {neg}. Nurse {name} removed the Foley catheter on {mdate}. ",
    "She was transferred to {neg} under the care of {dr}. ",
    "Glasgow Coma Scale was 15; {neg}. Hospital day 3 was uneventful. ",
    "Questions may be sent to {email} or faxed to {phone}. ",
    "He previously saw Dr. {name} in {year}. ",
    "Discussed with NP {name} and case manager {name}, who arranged home services. ",
    "Pharmacist {name} reviewed the regimen; dose escalation 5-10-20 mg over three weeks. ",
    "Spoke with {first} (daughter) by phone; she agrees with the plan. ",
    "Her last mammogram was {monthyear}; LDL {neg}. ",
    "Potassium repleted on {shortdate} and again on {shortdate}. ",
    "Sodium goal 135-145; L4-5 disc bulge noted on MRI in {year}. ",
    "Vaccines: influenza {monthyear}. Allergies: penicillin (rash). ",
    "Seen together with Drs. {lastname} and {lastname} from {dept}. ",
    "Dr {lastname} (covering) reviewed imaging on {dotdate}. ",
    "Family history: brother with Crohn disease; mother Alzheimer dementia; father Graves disease. ",
    "Pain controlled with MS Contin 15 mg BID and Norco 5/325 mg q6h PRN. ",
    "{sexage} with {eponym}, admitted for CHF exacerbation. Tmax 101 F, temp 100 F this morning. ",
    "Sliding scale insulin 10-12-14 units with meals; NDC 0002-8215-01 dispensed. ",
    "Chest X-ray PA and lateral, EF 55-60%, Gleason 3+4, Wells score 4, Child-Pugh B. ",
    "Accession #: {accession}. Specimen sent on {date} to pathology. ",
    "Her husband {first} was at the bedside; daughter {name} lives at {addr_postdir}. ",
    "Temperature 38.2 °C on Tuesday, {date}. Nurse Navigator program referral placed. ",
    "Contact: {email}; Tel. {phone} ext. {ext}. ",
    "Patient is a {oldage} years of age resident of a nursing home; {neg}. ",
]
SIGNOFFS = [
    "\nSigned: {sig_cred}\n", "\nElectronically signed by {sig_cred} on {date} 14:32\n",
    "\n-- {name} RN\n", "\nDictated by: {sig_cred}\n", "\nAttending: {dr}\n",
    "\nSincerely,\n{sig_cred}\n",
]


def pick(rng, pool, k):
    return [rng.choice(pool) for _ in range(k)]


def discharge(rng):
    parts = ["DISCHARGE SUMMARY\n"] + rng.sample(HEADER_LINES, rng.randint(3, 6))
    parts += ["\nHOSPITAL COURSE:\n"] + pick(rng, NARRATIVE, rng.randint(6, 11))
    parts += ["\nDISCHARGE INSTRUCTIONS: Follow up with {dept} on {date}. Call {phone} with questions. "]
    parts += [rng.choice(SIGNOFFS)]
    return parts


def progress(rng):
    parts = ["PROGRESS NOTE {date}\n", "S: Patient reports less pain; {neg}.\n",
             "O: {neg}. {neg}. Exam: {neg}.\n", "A/P: {eponym}, improving. "]
    parts += pick(rng, NARRATIVE, rng.randint(4, 8))
    parts += ["Continue {drug}. Discussed with {staff}.\n", rng.choice(SIGNOFFS)]
    return parts


DIALOGUE_TURNS = [
    "Doctor: Good morning, {mr}. How have you been since {mdate}?\n",
    "Patient: Not great. My chest has been tight and {neg}.\n",
    "Patient: My name is {name} and I was born on {date}.\n",
    "Doctor: Can you confirm your address?\nPatient: It's {addr}.\n",
    "Patient: The Dr. said I could take {drug}.\n",
    "Doctor: What number can we reach you at?\nPatient: {phone}, that's my cell.\n",
    "Patient: I'm {oldage} years old, doctor, and I still garden every day.\n",
    "Doctor: Your blood pressure is {neg}.\n",
    "Patient: My {relation} drove me. She worries a lot.\n",
    "Doctor: I'll send the results to {email}.\n",
    "Patient: I had {eponym} diagnosed back in {year}.\n",
    "Doctor: Let's follow up with {dept} and recheck labs on {date}.\n",
    "Patient: Yes. Thank you, {dr}.\n",
    "Doctor: Mr. {name}, are you taking {drug}?\nPatient: Yes, and {neg}.\n",
    "Patient: I'm {age} and have {eponym}.\n",
    "Patient: Sometimes Tylenol Extra Strength helps a little.\n",
    "Patient: Honestly I stopped the Lasix on {shortdate} because of cramps.\n",
    "Patient: Crohn's Disease runs in my family.\n",
]


def dialogue(rng):
    parts = ["VISIT TRANSCRIPT\n"]
    parts += pick(rng, DIALOGUE_TURNS, rng.randint(7, 12))
    parts += ["Doctor: Take care. We'll see you on {mdate}.\n"]
    return parts


def referral(rng):
    parts = [
        "{date}\n\n", "Dear {dr},\n\n",
        "Re: {name}, DOB {date}, MRN {mrn}\n\n",
        "Thank you for seeing this patient, {age}, for evaluation of {eponym}. ",
    ]
    parts += pick(rng, NARRATIVE, rng.randint(4, 8))
    parts += ["The patient can be contacted at {phone} or at home, {addr_full}. ",
              "Please send your report to {email} or fax {phone}.\n", "\nSincerely,\n{sig_cred}\n",
              "{dept} Clinic, {addr_full}\n"]
    return parts


LAYOUTS = [(discharge, 0.35), (progress, 0.25), (dialogue, 0.2), (referral, 0.2)]


def make_note(rng, idx):
    layout = rng.choices([f for f, _ in LAYOUTS], [w for _, w in LAYOUTS])[0]
    for _ in range(20):
        note = Note()
        for template in layout(rng):
            note.extend(fill(rng, template, SLOTS))
        words = len(note.text().split())
        if 80 <= words <= 300:
            return {"id": f"phi-{idx:04d}", "offsets": "utf8-bytes", "text": note.text(),
                    "spans": note.spans}
    raise RuntimeError(f"could not fit note {idx} into 80-300 words")


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "phi_labelled.jsonl")
    rng = random.Random(SEED)
    notes = [make_note(rng, i) for i in range(N_NOTES)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for note in notes:
            f.write(json.dumps(note, ensure_ascii=False) + "\n")
    counts = {}
    for note in notes:
        for span in note["spans"]:
            counts[span["kind"]] = counts.get(span["kind"], 0) + 1
    print(f"{len(notes)} notes, {sum(counts.values())} spans: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
