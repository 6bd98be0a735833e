#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer_smollm2.jsonl: texts and the token ids llama.cpp gives them.

Each line is {"text", "ids"}: the ids are llama.cpp's tokenization of the SmolLM2 GGUF with
add_bos=False and special=True, the reference the Rust tokenizer must match exactly.

Needs llama-cpp-python (it installs nothing itself):
    python3 -m pip install llama-cpp-python==0.3.36
and the model, fetched by scripts/fetch-smollm2.sh. Run from anywhere:
    python3 scripts/make-tokenizer-fixture.py [MODEL.gguf]

The texts are clinical notes from sample_data/ cut into pieces of varied length, plus
hand-written cases for what tokenizers get wrong: numbers and doses, dates, accents, CJK, emoji,
runs of whitespace, special tokens written inside text, contractions and code. The seed fixes
the output.
"""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests/fixtures/tokenizer_smollm2.jsonl"
SEED = 135
NOTES_PER_FILE = 12
PIECES_PER_NOTE = 5

HAND_WRITTEN = [
    # numbers, doses, vitals, dates
    "BP 120/80", "BP 120/80 mmHg, HR 72 bpm, SpO2 98% on RA", "5.5mg", "5.5 mg", "0.125 mg",
    "1,000 units", "10,000 units of heparin", "q4-6h", "Q6H PRN", "BID x 7 days", "t.i.d.",
    "12/03/2024", "2024-03-12", "March 3rd, 2024", "03:45 AM", "14:30", "1234567890",
    "3.14159265358979", "-40", "+2.5", "1e-3", "50%", "Temp 101.3°F (38.5°C)", "pH 7.35",
    "K+ 3.2 mEq/L", "Na+ 135", "HbA1c 7.2%", "INR 2.0-3.0", "Room 4B, bed 12", "ICD-10 E11.9",
    # unicode
    "Vitamin B12 500 μg daily", "café, naïve, résumé, Zoë, Søren, José", "Straße", "Ελληνικά μg",
    "患者は発熱しています。", "病人发烧了三天。", "환자는 열이 있습니다", "Температура 38,5",
    "مريض", "Feeling better 😊👍", "❤️ family", "🏥🚑💊", "naïve café — “quoted” ‘single’ …",
    "½ tablet", "≥ 90 mmHg, ≤ 140", "→ follow up", "x² + y²", "\u00a0non-breaking space",
    "zero\u200bwidth", "e\u0301 combining accent", "ﬁ ligature", "ＡＢＣ fullwidth",
    # whitespace
    "  two leading spaces", "trailing spaces   ", "\ttab at start", "tab\tin\tthe\tmiddle",
    "line one\nline two", "blank line\n\nafter", "\n\n\nthree newlines first", "crlf\r\nline",
    "spaces      in     runs", "mixed \t \n whitespace \n\t ", " ", "\n", "\t", "   \n   ",
    "end with newline\n", "a  b   c    d", "word \n  next",
    # special tokens inside text
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\n",
    "text before<|im_end|>text after", "<|endoftext|>", "no<|im_start|>space",
    " <|im_end|> spaced ", "<|im_start|><|im_end|>", "<|im_start", "im_end|>", "<|IM_END|>",
    "<filename>main.rs<file_sep>", "<|im_end|><|im_end|>",
    # contractions and case
    "don't", "I'LL", "we've", "she'd", "they're", "it's", "DON'T", "Can't won't shouldn't",
    "patient's", "O'Brien", "rock 'n' roll", "'quoted'", "I'm", "YOU'RE",
    # code-like
    "fn main() { println!(\"hi\"); }", "if (x >= 10 && y != 0) return;", "def f(x):\n    return x**2",
    "{\"dose\": 5.5, \"unit\": \"mg\"}", "<div class=\"note\">BP</div>", "SELECT * FROM labs;",
    "path/to/file.txt", "https://example.org/a?b=1&c=2", "user@example.com", "#hashtag @mention",
    "snake_case_name CamelCaseName kebab-case", "a->b => c", "x += 1; y -= 2;", "`code` **bold**",
    "    indented four", "////", "....", "!!!???", "---", "***", "(((nested)))",
    # assorted
    "", "a", "A", "Hello world", "HELLO WORLD", "The patient was discharged home.",
    "Take 1 tablet by mouth twice daily with food.", "NPO after midnight.",
    "s/p CABG x3", "r/o MI", "c/o SOB", "w/o contrast", "Dx: T2DM; Rx: metformin 500mg PO BID",
]


def pieces_of(text, rng):
    """Cut `text` into a few pieces of varied length, at character (not word) boundaries too."""
    out = []
    for _ in range(PIECES_PER_NOTE):
        length = rng.choice([1, 3, 8, 20, 60, 150, 400, 1200])
        start = rng.randrange(0, max(1, len(text) - length + 1))
        out.append(text[start:start + length])
    return out


def note_texts(rng):
    texts = []
    for path in sorted((ROOT / "sample_data").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        for record in rng.sample(records, NOTES_PER_FILE):
            field = rng.choice(["input", "target"])
            texts.append(record[field])
            texts.extend(pieces_of(record[field], rng))
    return texts


def main():
    from llama_cpp import Llama

    model = Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL
    if not model.is_file():
        sys.exit(f"{model} is missing: run scripts/fetch-smollm2.sh first")
    llm = Llama(model_path=str(model), vocab_only=True, verbose=False)
    rng = random.Random(SEED)
    texts = HAND_WRITTEN + note_texts(rng)
    seen = set()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for text in texts:
            if text in seen:
                continue
            seen.add(text)
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"wrote {len(seen)} texts to {OUT}")


if __name__ == "__main__":
    main()
