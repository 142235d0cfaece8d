"""How the worked solutions read on paper: pages, overfull boxes, where key headings fall.

Compiles every bundled example (not the answers file nor the sheet template) in English and
French, in full and compact detail, to PDF and prints, per document, the number of pages,
the number of ``Overfull \\hbox`` warnings in the LaTeX log, and the page on which each key
passage starts (the backward pass; for a convolution, the filter's gradient). Needs a LaTeX
engine and pdftotext/pdfinfo (poppler-utils). Asserts nothing.

    python benchmarks/doc_metrics.py [--examples a.toml b.toml …] [--lang en fr]
        [--detail full compact]
"""

from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backprop_explain import api, pdf  # noqa: E402

SKIP = {"course_3_2_2_answers.toml", "sheet_mlp_3_2_2.toml"}
# Passages whose first page is reported: label -> the words that open it, per language
# (several spellings: the wording of earlier versions, so "before" can be measured).
PASSAGES = {
    "backward": {"en": ["Backward pass"], "fr": ["Passe arrière", "Rétropropagation :"]},
    "filter gradient": {"en": ["Each filter weight is used", "Gradient of the filter"],
                        "fr": ["Chaque poids du filtre", "Gradient du filtre"]},
}


def pages_text(pdf_bytes: bytes) -> list[str]:
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf_bytes)
        f.flush()
        text = subprocess.run(["pdftotext", f.name, "-"], capture_output=True, text=True,
                              check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def measure(example: Path, lang: str, detail: str | None) -> dict:
    kwargs = {"detail": detail} if detail else {}
    tex = api.explain(str(example), fmt="tex", lang=lang, **kwargs)
    pdf_bytes, log = pdf.compile_with_log(tex)
    pages = pages_text(pdf_bytes)
    found = {}
    for label, words in PASSAGES.items():
        for k, page in enumerate(pages, 1):
            flat = " ".join(page.split())
            if any(w in flat for w in words[lang]):
                found[label] = k
                break
    return {"pages": len(pages), "overfull": len(re.findall(r"^Overfull \\hbox", log, re.M)),
            "passages": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", type=Path,
                        default=sorted(p for p in (ROOT / "examples").glob("*.toml")
                                       if p.name not in SKIP))
    parser.add_argument("--lang", nargs="*", default=["en", "fr"])
    parser.add_argument("--detail", nargs="*", default=["full", "compact"])
    args = parser.parse_args()
    has_detail = "detail" in inspect.signature(api.explain).parameters
    details = args.detail if has_detail else [None]
    print(f"{'example':34} {'lang':4} {'detail':8} {'pages':>5} {'overfull':>8}  passages (page)")
    for example in args.examples:
        for lang in args.lang:
            for detail in details:
                m = measure(example, lang, detail)
                passages = ", ".join(f"{k} {v}" for k, v in m["passages"].items())
                print(f"{example.name:34} {lang:4} {detail or '-':8} {m['pages']:5} "
                      f"{m['overfull']:8}  {passages}", flush=True)


if __name__ == "__main__":
    main()
