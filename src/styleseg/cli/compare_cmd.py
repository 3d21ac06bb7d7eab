"""`styleseg compare EVAL_DIR ...`."""

from __future__ import annotations

import html
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="key figures of several evaluations side by side (text and HTML)",
        description="Reads the metrics.json of each `styleseg evaluate` folder; prints a table and writes an "
        "HTML page with a plot. Each later evaluation is compared with the first, and each difference is "
        "marked as within or beyond the spread the evaluations measured.",
    )
    p.add_argument("evals", nargs="+", help="evaluation folders (the first is the reference)")
    p.add_argument("--out", default="compare.html", help="HTML file to write (default compare.html)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from styleseg.compare import compare_rows, load_metrics, plot_usefulness
    from styleseg.report import _table

    metrics = [load_metrics(Path(e)) for e in args.evals]
    header, rows = compare_rows(metrics)
    for i, (folder, m) in enumerate(zip(args.evals, metrics)):
        print(f"[{i}] {folder}: {m['checkpoint']} (n={m['n']}, seeds={m['options']['seeds']})")
    widths = [max(len(str(r[c])) for r in [header] + rows) for c in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    legend = "".join(f"<li>[{i}] <code>{html.escape(str(e))}</code></li>" for i, e in enumerate(args.evals))
    doc = (
        '<!doctype html><html><head><meta charset="utf-8"><title>styleseg compare</title><style>'
        "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px}</style></head><body><h1>styleseg compare</h1>"
        f"<ul>{legend}</ul>{_table(rows, header)}{plot_usefulness(metrics, [f'[{i}]' for i in range(len(metrics))])}"
        "</body></html>"
    )
    Path(args.out).write_text(doc)
    print(f"written: {args.out}")
    return 0
