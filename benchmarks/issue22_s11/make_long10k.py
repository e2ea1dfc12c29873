"""10,528 long documents for a first-run timing: each EUR-Lex summary 7 times, each copy made distinct
(a copy number word in front, so every text is embedded and featurized), splits kept per copy."""
import gzip
import json

rows = [json.loads(l) for l in gzip.open("src/mlsupcon/data/bundled/eurlex_sum.jsonl.gz", "rt")]
words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
with open("runs/i22s11/long10k.jsonl", "w") as f:
    for c, w in enumerate(words):
        for r in rows:
            f.write(json.dumps({"id": f"{r.get('id', '')}-{c}", "text": f"{w} {r['text']}", "labels": r["labels"],
                                "split": r["split"]}) + "\n")
print(len(rows) * len(words))
