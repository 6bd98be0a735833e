#!/usr/bin/env python3
"""Builds tests/fixtures/bias/fairlearn.json, the reference the bias audit's disparities are
checked against (src/analysis/bias/tests.rs):

  pip install fairlearn==0.13.0 pandas

300 synthetic per-example values (a ROUGE-like score with group effects) with a gender, an age
and an ethnicity each, and for every dimension and every pair of dimensions Fairlearn's
MetricFrame(metrics=mean of the values).by_group, .overall, .difference() and .ratio() with
method "between_groups" and "to_overall". Age groups use Lab Lens's bins (<18, 18-35, 35-50,
50-65, 65+; lower bounds inclusive). A few values are exactly 0 so that empty-ish groups and
ratios are exercised; every combination need not be present (Fairlearn leaves missing ones out).

Run from the repository root: python3 scripts/make-bias-fixture.py
"""
import json
import random
from itertools import combinations
from pathlib import Path

import fairlearn
import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

OUT = Path("tests/fixtures/bias/fairlearn.json")
N = 300
DIMS = ["gender", "age_group", "ethnicity"]


def age_group(age):
    if age < 18:
        return "<18"
    if age < 35:
        return "18-35"
    if age < 50:
        return "35-50"
    if age < 65:
        return "50-65"
    return "65+"


def mean_value(y_true, y_pred):
    # The per-example metric travels as y_pred; y_true is unused.
    return float(np.mean(y_pred))


def main():
    rng = random.Random(20261204)
    genders = ["F", "M"]
    ethnicities = ["White", "Hispanic", "Black", "Asian", "Other"]
    weights = [0.55, 0.2, 0.13, 0.08, 0.04]
    effect = {"White": 0.0, "Hispanic": -0.08, "Black": -0.03, "Asian": 0.02, "Other": 0.05}
    rows = []
    for i in range(N):
        gender = rng.choice(genders)
        age = rng.randint(5, 95)
        ethnicity = rng.choices(ethnicities, weights)[0]
        value = 0.45 + effect[ethnicity] + (0.04 if gender == "F" else 0.0)
        value += -0.06 if age >= 65 else 0.0
        value = min(1.0, max(0.0, value + rng.gauss(0, 0.12)))
        if i % 97 == 0:
            value = 0.0
        rows.append({"id": f"b-{i:04d}", "gender": gender, "age": age,
                     "ethnicity": ethnicity, "value": round(value, 6)})
    df = pd.DataFrame(rows)
    df["age_group"] = df["age"].map(age_group)
    frames = {}
    sets = [[d] for d in DIMS] + [list(p) for p in combinations(DIMS, 2)]
    for dims in sets:
        mf = MetricFrame(metrics=mean_value, y_true=df["value"], y_pred=df["value"],
                         sensitive_features=df[dims])
        by_group = {}
        for key, v in mf.by_group.items():
            key = key if isinstance(key, tuple) else (key,)
            if pd.isna(v):
                continue
            by_group[" × ".join(str(k) for k in key)] = float(v)
        frames[",".join(dims)] = {
            "overall": float(mf.overall),
            "by_group": by_group,
            "between_groups": {
                "difference": float(mf.difference(method="between_groups")),
                "ratio": float(mf.ratio(method="between_groups")),
            },
            "to_overall": {
                "difference": float(mf.difference(method="to_overall")),
                "ratio": float(mf.ratio(method="to_overall")),
            },
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "fairlearn_version": fairlearn.__version__,
        "rows": rows,
        "frames": frames,
    }, indent=1) + "\n")
    print(f"wrote {OUT}: {N} rows, {len(frames)} dimension sets")


if __name__ == "__main__":
    main()
