#!/usr/bin/env python3
"""Writes tests/fixtures/lime/limebase_reference.json: perturbation masks, targets and distances
as Lab Lens's LIME draws them (first row the unperturbed input, cosine distance x 100 to it), and
the surrogate that `lime.lime_base.LimeBase` fits to them with the kernel the explanation uses,
exp(-d^2 / w^2) with width 25 (lime's own default kernel is the square root of that), all
features kept (feature_selection='none') and its default Ridge(alpha=1, fit_intercept=True).

Run: python3 -m pip install lime scikit-learn && python3 scripts/make-lime-fixture.py
"""
import json
import pathlib
from importlib.metadata import version

import numpy as np
import sklearn
from lime.lime_base import LimeBase
from sklearn.metrics.pairwise import pairwise_distances

WIDTH = 25.0
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/lime/limebase_reference.json"


def kernel(d):
    return np.exp(-(d**2) / WIDTH**2)


def case(name, features, samples, seed):
    rng = np.random.RandomState(seed)
    # As lime_text draws them: how many features to remove, uniform in 1..d, then which.
    masks = np.ones((samples, features))
    removed = rng.randint(1, features + 1, samples - 1)
    for i, k in enumerate(removed, start=1):
        masks[i, rng.choice(features, k, replace=False)] = 0
    distances = pairwise_distances(masks, masks[0].reshape(1, -1), metric="cosine").ravel() * 100
    truth = rng.normal(0, 1, features)
    targets = -40 + masks @ truth + rng.normal(0, 0.3, samples)
    base = LimeBase(kernel_fn=kernel, verbose=False, random_state=0)
    intercept, local_exp, score, _ = base.explain_instance_with_data(
        masks, targets.reshape(-1, 1), distances, 0, features, feature_selection="none"
    )
    weights = [0.0] * features
    for index, weight in local_exp:
        weights[index] = float(weight)
    return {
        "name": name,
        "kernel_width": WIDTH,
        "masks": masks.astype(int).tolist(),
        "targets": targets.tolist(),
        "distances": distances.tolist(),
        "kernel_weights": kernel(distances).tolist(),
        "weights": weights,
        "intercept": float(intercept),
        "score": float(score),
    }


def main():
    cases = [case("12 features, 200 samples", 12, 200, 7), case("60 features, 256 samples", 60, 256, 11)]
    doc = {
        "generator": "scripts/make-lime-fixture.py",
        "lime": version("lime"),
        "scikit_learn": sklearn.__version__,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
