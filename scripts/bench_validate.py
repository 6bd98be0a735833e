#!/usr/bin/env python3
"""The Python side of scripts/bench-validate.sh: what `lablens validate` replaces.

  bench_validate.py FILE                 pandas read_json(lines=True) plus the same checks, best of 3
  bench_validate.py --command CMD...     run CMD three times (stdout discarded), best wall time
  bench_validate.py --make FILE N        write N synthetic discharge records (for measuring without lablens)

Each timing mode prints one line: the best time in seconds.
"""

import json
import random
import re
import subprocess
import sys
import time

LIMITS = {"input": (5, 4000), "target": (1, 1500)}
REPEATS = 3

# The kinds src/data/phi finds, as plain regexes (simplified: no name cues beyond titles and fields).
PHI = {
    "name": re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Nurse|Doctor)\b\.?[ \t]+[A-Z][\w'’]*(?:[ \t]+[A-Z][\w'’]*){0,3}"
                       r"|^[ \t]*(?:Patient|Name|Attending|PCP)[ \t]*[:,]?[ \t]*[A-Z][\w'’]*(?:[ \t]+[A-Z][\w'’]*){1,3}", re.M),
    "date": re.compile(r"\b(?:\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})|\d{4}[-/]\d{1,2}[-/]\d{1,2})\b"
                       r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?[ \t]+\d{1,2}(?:st|nd|rd|th)?,?[ \t]+\d{4}\b"),
    "id": re.compile(r"\b(?i:mrn|acct|account|ssn|policy|encounter)(?:[ \t]+(?i:number|no\.?|id|#))?[ \t]*[:#]?[ \t]*[A-Z0-9][A-Z0-9-]{3,19}\b"
                     r"|\b\d{3}-\d{2}-\d{4}\b|\b(?:[A-Z]{1,4}\d{6,}|\d{7,})\b"),
    "phone": re.compile(r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}\b"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    "address": re.compile(r"\b\d{1,5}[ \t]+(?:[A-Z][\w'.]*[ \t]+){1,4}(?:Street|Avenue|Road|Boulevard|Drive|Lane|Court|Way|St|Ave|Rd|Blvd|Dr|Ln)\b\.?"
                          r"|\b(?i:p\.?[ \t]*o\.?[ \t]*box)[ \t]+\d+\b"),
    "age": re.compile(r"\b(?:(?i:aged?)[ \t]*:?[ \t]*(\d{2,3})|(\d{2,3})(?:[ \t]*-[ \t]*|[ \t]+)(?:years?|yrs?|y)(?:[ \t]*-[ \t]*|[ \t]+)old)\b"),
}


def checks(path):
    import pandas as pd

    df = pd.read_json(path, lines=True, dtype=False)
    report = {"records": len(df)}
    fields = ["input", "target", "patient_id", "gender", "age", "ethnicity"]
    report["missing"] = {
        f: int(df[f].isna().sum()) if f in df else len(df) for f in fields
    }
    for f in ("input", "target"):
        report["missing"][f] += int((df[f].fillna("").str.strip() == "").sum())
    report["exact_duplicates"] = int(df.duplicated(subset=["input", "target"]).sum())
    norm = {f: df[f].fillna("").str.split().str.join(" ").str.lower() for f in ("input", "target")}
    normalized = pd.DataFrame(norm)
    report["normalized_duplicates"] = int(normalized.duplicated().sum())
    targets_per_input = normalized.groupby("input")["target"].nunique()
    report["conflicts"] = int((targets_per_input > 1).sum())
    for f, (low, high) in LIMITS.items():
        words = df[f].fillna("").str.split().str.len()
        report[f + "_words"] = words.describe(percentiles=[0.5, 0.95]).to_dict()
        report[f + "_outside"] = df.loc[(words < low) | (words > high), "id"].tolist()
    groups = pd.cut(df["age"], [0, 18, 35, 50, 65, 1000], right=False,
                    labels=["<18", "18-35", "35-50", "50-65", "65+"])
    report["coverage"] = {
        "gender": df["gender"].value_counts(dropna=False).to_dict(),
        "age_group": groups.value_counts(dropna=False).to_dict(),
        "ethnicity": df["ethnicity"].value_counts(dropna=False).to_dict(),
    }
    report["tasks"] = df["task"].value_counts().to_dict() if "task" in df else {}
    by_kind = dict.fromkeys(PHI, 0)
    with_phi = 0
    for text_in, text_out in zip(df["input"].fillna(""), df["target"].fillna("")):
        found = False
        for kind, pattern in PHI.items():
            n = sum(1 for _ in pattern.finditer(text_in)) + sum(1 for _ in pattern.finditer(text_out))
            if n:
                by_kind[kind] += n
                found = True
        with_phi += found
    report["phi"] = {"by_kind": by_kind, "records_with_phi": with_phi}
    return report


def best_of(run):
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def run_command(command):
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # `lablens validate` exits 1 when a check fails (PHI in synthetic data, say); 2 is bad input.
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} exited with {result.returncode}")


WORDS = ("patient admitted with chest pain shortness of breath fever cough abdominal pain nausea "
         "vomiting treated started continued stopped improved stable discharged home follow up "
         "clinic weeks labs normal elevated troponin creatinine glucose blood pressure heart rate "
         "echocardiogram showed ejection fraction chest x-ray infiltrate antibiotics intravenous oral "
         "tablet daily twice morning evening pneumonia heart failure diabetes hypertension kidney").split()
SECTIONS = ["Discharge Diagnosis", "History of Present Illness", "Hospital Course",
            "Discharge Medications", "Discharge Instructions", "Follow-up"]
MEDS = ["Metformin 500 mg", "Lisinopril 10 mg", "Atorvastatin 40 mg", "Furosemide 20 mg", "Aspirin 81 mg"]


def make(path, n, seed=1):
    rng = random.Random(seed)

    def sentence():
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "."

    with open(path, "w") as out:
        for i in range(n):
            parts = []
            for title in SECTIONS:
                body = " ".join(sentence() for _ in range(rng.randint(2, 3)))
                if title == "Discharge Medications":
                    body = "; ".join(rng.sample(MEDS, 3)) + ". " + body
                parts.append(f"{title}: {body}")
            if rng.random() < 0.03:
                parts.append(f"Call {rng.randint(200, 999)}-555-{rng.randint(1000, 9999)} with questions.")
            record = {
                "id": f"d{i}", "patient_id": f"p{i // 2}", "task": "discharge",
                "input": "\n".join(parts),
                "target": " ".join(sentence() for _ in range(rng.randint(4, 7))),
                "gender": rng.choice(["F", "M"]), "age": rng.randint(18, 95),
                "ethnicity": rng.choice(["White", "Black", "Hispanic", "Asian", "Other"]),
            }
            out.write(json.dumps(record) + "\n")


def main(argv):
    if len(argv) == 3 and argv[0] == "--make":
        make(argv[1], int(argv[2]))
    elif len(argv) >= 2 and argv[0] == "--command":
        print(f"{best_of(lambda: run_command(argv[1:])):.3f}")
    elif len(argv) == 1:
        print(f"{best_of(lambda: checks(argv[0])):.3f}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
