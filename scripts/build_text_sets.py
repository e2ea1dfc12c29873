#!/usr/bin/env python
"""Build the bundled multi-label text sets ``reuters`` and ``eurlex-sum`` from their public sources.

Writes ``src/mlsupcon/data/bundled/{reuters,eurlex_sum}.jsonl.gz``: one JSON object a line,
``{"id", "split", "text", "labels"}`` (``eurlex_sum`` adds ``"eurovoc"``), in a fixed order, gzip
with mtime 0, so that the same sources give the same bytes. Where the sources come from, their
licences and every cleaning step: ``src/mlsupcon/data/bundled/TEXT_SETS_README.md``.

Usage (each source is a plain folder; the README says how to get it)::

    python scripts/build_text_sets.py reuters --source reuters21578/
    python scripts/build_text_sets.py eurlex-sum --source EUR-Lex-Triples/Dataset/Annotated_Documents/

``reuters`` (Reuters-21578, Distribution 1.0, "ApteMod" = ModApte split restricted to the 90
topics with at least one training and one test document, as in NLTK's ``reuters`` corpus):

* documents with ``TOPICS="YES"``; ``LEWISSPLIT="TRAIN"`` → train, ``"TEST"`` → test; the other
  documents (``NOT-USED``, ``TOPICS="NO"/"BYPASS"``) are left out;
* labels: the document's ``<TOPICS>`` restricted to the 90 topics that occur in both splits;
  documents left without one of them are dropped (7,769 train / 3,019 test remain);
* validation: the 10 % of the training documents (rounded) whose ``sha1("reuters-validation:"
  + id)`` is smallest, a fixed split that needs no random generator;
* text: ``TITLE`` + newline + ``BODY`` (or the raw ``TEXT`` of ``UNPROC`` documents), SGML
  entities decoded, control characters (``&#1;`` … ``&#31;``) removed, the closing ``Reuter`` /
  ``REUTER`` signature removed, runs of spaces folded, lines stripped, blank lines dropped;
* id: the collection's ``NEWID``.

``eurlex-sum`` (the English EUR-Lex-Sum documents as stored by EUR-Lex-Triples, CC BY 4.0):

* one example per ``document_*.json``; split: the file's ``split`` (EUR-Lex-Sum's own);
* labels: ``subjects`` (EUR-Lex subject matters of the summary); ``eurovoc``: ``tags`` (EuroVoc
  descriptors), kept as a second label field;
* text: ``reference`` (the act's text as scraped from EUR-Lex) without the page header
  (``EUR-Lex - ID - EN`` / ``Important legal notice`` / ``|`` / ``ID``), without separator lines
  (``-----…``) and ``+++++ TIFF +++++`` markers, cut after its first ``--max-words`` (default
  2,000) whitespace-separated words (the cut keeps the original spacing; 87 % of the acts are
  longer: median 6,178 words, mean 14,361, longest 1.09 million);
* id: the CELEX number.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "mlsupcon" / "data" / "bundled"

_REUTERS = re.compile(r"<REUTERS(?P<attrs>[^>]*)>(?P<body>.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_CONTROL = re.compile(r"&#(\d+);")


def _tag(body: str, name: str) -> str | None:
    m = re.search(rf"<{name}(?:\s[^>]*)?>(.*?)</{name}>", body, re.S)
    return m.group(1) if m else None


def _clean_reuters(raw: str) -> str:
    # Control characters are written as &#N; (N < 32); drop them before decoding the entities.
    s = _CONTROL.sub(lambda m: "" if int(m.group(1)) < 32 else m.group(0), raw)
    s = html.unescape(s)
    s = re.sub(r"\s*\b(?:Reuter|REUTER)\s*$", "", s.strip())
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in s.splitlines()]
    return "\n".join(line for line in lines if line)


def read_reuters(source: Path) -> list[dict]:
    files = sorted(source.glob("reut2-*.sgm"))
    if len(files) != 22:
        raise SystemExit(f"{source}: expected the 22 files reut2-000.sgm … reut2-021.sgm, found {len(files)}")
    docs = []
    for f in files:
        # The collection is ASCII but for one byte 0xFC in reut2-017.sgm: read it as Latin-1.
        for m in _REUTERS.finditer(f.read_text(encoding="latin-1")):
            attrs = dict(_ATTR.findall(m.group("attrs")))
            body = m.group("body")
            topics = re.findall(r"<D>(.*?)</D>", _tag(body, "TOPICS") or "")
            text = _tag(body, "TEXT") or ""
            title = _tag(text, "TITLE")
            main = _tag(text, "BODY")
            if title is None and main is None:  # TYPE="UNPROC": unstructured text
                parts = [text]
            else:
                parts = [title or "", main or ""]
            docs.append({
                "id": attrs["NEWID"], "topics_flag": attrs["TOPICS"], "lewis": attrs["LEWISSPLIT"],
                "topics": topics, "text": "\n".join(_clean_reuters(p) for p in parts if p.strip()),
            })
    if len(docs) != 21578:
        raise SystemExit(f"{source}: expected 21,578 documents, parsed {len(docs)}")
    split = {"TRAIN": "train", "TEST": "test"}
    kept = [d for d in docs if d["topics_flag"] == "YES" and d["lewis"] in split]
    in_train = {t for d in kept if d["lewis"] == "TRAIN" for t in d["topics"]}
    in_test = {t for d in kept if d["lewis"] == "TEST" for t in d["topics"]}
    cats = in_train & in_test
    out = []
    for d in kept:
        labels = sorted(t for t in d["topics"] if t in cats)
        if labels and d["text"]:
            out.append({"id": d["id"], "split": split[d["lewis"]], "text": d["text"], "labels": labels})
    train_ids = [d["id"] for d in out if d["split"] == "train"]
    n_val = round(0.1 * len(train_ids))
    val = set(sorted(train_ids, key=lambda i: hashlib.sha1(f"reuters-validation:{i}".encode()).hexdigest())[:n_val])
    for d in out:
        if d["id"] in val:
            d["split"] = "validation"
    out.sort(key=lambda d: int(d["id"]))
    return out


_HEADER = re.compile(r"\AEUR-Lex - (?P<id>\S+) - EN\s*\nImportant legal notice\s*\n\|\s*\n(?P=id)\s*\n")


def _clip_words(text: str, max_words: int) -> str:
    if max_words <= 0:
        return text
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text if len(ends) <= max_words else text[:ends[max_words - 1]]


def read_eurlex_sum(source: Path, max_words: int) -> list[dict]:
    files = sorted(source.glob("document_*.json"))
    if not files:
        raise SystemExit(f"{source}: no document_*.json files")
    out = []
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        text = _HEADER.sub("", d["reference"].replace("\r\n", "\n"))
        text = re.sub(r"-{10,}", "\n", text).replace("+++++ TIFF +++++", " ")
        lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()]
        text = _clip_words("\n".join(line for line in lines if line), max_words)
        out.append({
            "id": d["celex_id"], "split": d["split"], "text": text,
            "labels": sorted(set(d["subjects"])), "eurovoc": sorted(set(d["tags"])),
        })
    out.sort(key=lambda d: d["id"])
    return out


def write_jsonl_gz(records: list[dict], path: Path) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        for r in records:
            g.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())


def summary(records: list[dict]) -> str:
    splits = Counter(r["split"] for r in records)
    labels = Counter(lab for r in records for lab in r["labels"])
    words = [len(r["text"].split()) for r in records]
    per_doc = sum(len(r["labels"]) for r in records) / len(records)
    return (f"{len(records)} documents (train {splits['train']}, validation {splits['validation']}, "
            f"test {splits['test']}), {len(labels)} labels, {per_doc:.2f} labels/document, "
            f"{sum(words) / len(words):.1f} words/document on average")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", choices=["reuters", "eurlex-sum"])
    ap.add_argument("--source", type=Path, required=True, help="folder of the source files (see the module docstring)")
    ap.add_argument("--output", type=Path, help="default: src/mlsupcon/data/bundled/<name>.jsonl.gz")
    ap.add_argument("--max-words", type=int, default=2000, help="eurlex-sum: keep the first N words (0: all)")
    args = ap.parse_args(argv)
    if args.dataset == "reuters":
        records = read_reuters(args.source)
        out = args.output or BUNDLED / "reuters.jsonl.gz"
    else:
        records = read_eurlex_sum(args.source, args.max_words)
        out = args.output or BUNDLED / "eurlex_sum.jsonl.gz"
    write_jsonl_gz(records, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}: {summary(records)}; {out.stat().st_size:,} bytes, sha256 {digest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
