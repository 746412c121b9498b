#!/usr/bin/env python3
"""The benchmark record: docs/bench/results.jsonl, one JSON object a line, and the chart drawn from it.

Each line is one figure of one benchmark run:
  {"date": RFC 3339 UTC, "commit": short sha (+"-dirty"), "backend": "sqlite"|"postgres"|"-", "nproc": N,
   "workload": "w1", "figure": "workflows_per_s", "value": median, "min": .., "max": .., "unit": ".."}

Commands (Python 3 standard library only):
  bench_record.py commit
      prints the current commit as records name it (short sha, "-dirty" when tracked files have changes)
  bench_record.py add --workload W --figure F --unit U [--backend B] [--commit C] [--file PATH] VALUE...
      appends one line: the median of the values, with their min and max
  bench_record.py chart [--file PATH] [--out PATH]
      draws docs/bench/w1-w2.svg: W1 workflows/s and W2 round-trip p50 per backend, records in date order
"""
import argparse
import datetime
import html
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "bench", "results.jsonl")
CHART = os.path.join(ROOT, "docs", "bench", "w1-w2.svg")


def current_commit():
    """The short sha of HEAD, with "-dirty" when tracked files differ from it; "unknown" outside git."""
    try:
        sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True,
                             capture_output=True, text=True).stdout.strip()
        changes = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if changes else "")


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_line(workload, figure, values, unit, backend, commit, date=None):
    """One record as a JSON line, keys in the documented order."""
    return json.dumps({
        "date": date or now_rfc3339(),
        "commit": commit,
        "backend": backend,
        "nproc": os.cpu_count(),
        "workload": workload,
        "figure": figure,
        "value": round(statistics.median_high(values), 4),  # as caravan-bench: the upper middle of an even count
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "unit": unit,
    })


def read_records(path):
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                sys.exit(f"{path}:{number}: not JSON ({error})")
    return records


# MARK: Chart

SERIES_COLORS = {"sqlite": "#1f77b4", "postgres": "#d62728", "-": "#7f7f7f"}
PANELS = [
    ("w1", "workflows_per_s", "W1 throughput (workflows/s, higher is better)"),
    ("w2", "rtt_p50_ms", "W2 round trip p50 (ms, lower is better)"),
]


def nice_ceiling(value):
    """A round number at or above value (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 1
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def format_value(value):
    """A point's label: whole numbers from 100 up, three significant digits below."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def format_tick(value):
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:g}"


def chart(records, source="docs/bench/results.jsonl"):
    """The SVG text: one panel per figure of PANELS, x = commits in date order, one line per backend."""
    wanted = {(w, f) for w, f, _ in PANELS}
    chosen = [r for r in records if (r.get("workload"), r.get("figure")) in wanted]
    chosen.sort(key=lambda r: r["date"])
    # X positions: each commit once, at the date of its first record; a later record of the same commit,
    # backend and figure replaces an earlier one.
    commits = []
    first_date = {}
    for r in chosen:
        if r["commit"] not in first_date:
            first_date[r["commit"]] = r["date"]
            commits.append(r["commit"])
    order = list(SERIES_COLORS)
    backends = sorted({r["backend"] for r in chosen}, key=lambda b: (order.index(b) if b in order else len(order), b))

    width, panel_height = 760, 250
    left, right, top, gap = 70, 150, 40, 90
    plot_width = width - left - right
    height = top + len(PANELS) * (panel_height + gap)
    inset = 40  # keeps the first and last points (and their min..max bars) off the axes
    step_x = (plot_width - 2 * inset) / (len(commits) - 1) if len(commits) > 1 else 0
    x_of = {c: left + (inset + i * step_x if len(commits) > 1 else plot_width / 2) for i, c in enumerate(commits)}

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
        f'Caravan W1 and W2 by commit ({html.escape(source)})</text>',
    ]
    for index, (workload, figure, title) in enumerate(PANELS):
        y0 = top + index * (panel_height + gap)
        plot_top, plot_bottom = y0 + 20, y0 + panel_height
        points = {}
        for r in chosen:
            if r["workload"] == workload and r["figure"] == figure:
                points[(r["backend"], r["commit"])] = r
        ceiling = nice_ceiling(max([r.get("max", r["value"]) for r in points.values()] + [0]) * 1.05)

        def y_of(value):
            return plot_bottom - (value / ceiling) * (plot_bottom - plot_top)

        out.append(f'<text x="{left}" y="{y0 + 10}" font-size="12" font-weight="bold">{html.escape(title)}</text>')
        # Grid and y axis ticks.
        for tick in range(6):
            value = ceiling * tick / 5
            y = y_of(value)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_width}" y2="{y:.1f}" stroke="#e0e0e0"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{format_tick(value)}</text>')
        # Axes.
        out.append(f'<line x1="{left}" y1="{plot_top}" x2="{left}" y2="{plot_bottom}" stroke="black"/>')
        out.append(f'<line x1="{left}" y1="{plot_bottom}" x2="{left + plot_width}" y2="{plot_bottom}" stroke="black"/>')
        unit = next((r.get("unit", "") for r in points.values()), "")
        out.append(f'<text x="16" y="{(plot_top + plot_bottom) / 2:.1f}" text-anchor="middle" '
                   f'transform="rotate(-90 16 {(plot_top + plot_bottom) / 2:.1f})">{html.escape(unit)}</text>')
        # X labels: commit, and the date of its first record.
        crowded = len(commits) > 1 and step_x < 75
        for commit in commits:
            x = x_of[commit]
            out.append(f'<line x1="{x:.1f}" y1="{plot_bottom}" x2="{x:.1f}" y2="{plot_bottom + 4}" stroke="black"/>')
            if crowded:  # slanted, commit and date on one line
                out.append(f'<text x="{x:.1f}" y="{plot_bottom + 14}" text-anchor="end" font-size="9" '
                           f'transform="rotate(-35 {x:.1f} {plot_bottom + 14})">{html.escape(commit)} '
                           f'{html.escape(first_date[commit][5:10])}</text>')
                continue
            out.append(f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle">{html.escape(commit)}</text>')
            out.append(f'<text x="{x:.1f}" y="{plot_bottom + 29}" text-anchor="middle" fill="#666">'
                       f'{html.escape(first_date[commit][:10])}</text>')
        # One line per backend, with min..max whiskers.
        for backend in backends:
            color = SERIES_COLORS.get(backend, "#2ca02c")
            series = [(x_of[c], points[(backend, c)]) for c in commits if (backend, c) in points]
            if not series:
                continue
            if len(series) > 1:
                path = " ".join(f"{x:.1f},{y_of(r['value']):.1f}" for x, r in series)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, r in series:
                low, high = r.get("min", r["value"]), r.get("max", r["value"])
                if high > low:
                    out.append(f'<line x1="{x:.1f}" y1="{y_of(low):.1f}" x2="{x:.1f}" y2="{y_of(high):.1f}" '
                               f'stroke="{color}" stroke-opacity="0.5"/>')
                out.append(f'<circle cx="{x:.1f}" cy="{y_of(r["value"]):.1f}" r="3.5" fill="{color}">'
                           f'<title>{html.escape(backend)} {html.escape(r["commit"])} {r["date"]}: {r["value"]:g} '
                           f'({r.get("min", r["value"]):g}..{r.get("max", r["value"]):g}) '
                           f'{html.escape(r.get("unit", ""))}</title></circle>')
                out.append(f'<text x="{x + 5:.1f}" y="{y_of(r["value"]) - 6:.1f}" fill="{color}" font-size="10">'
                           f'{format_value(r["value"])}</text>')
        # Legend.
        legend_x = left + plot_width + 20
        for row, backend in enumerate(b for b in backends if any(k[0] == b for k in points)):
            color = SERIES_COLORS.get(backend, "#2ca02c")
            y = plot_top + 10 + row * 18
            out.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 22}" y2="{y}" stroke="{color}" stroke-width="2"/>')
            out.append(f'<circle cx="{legend_x + 11}" cy="{y}" r="3.5" fill="{color}"/>')
            out.append(f'<text x="{legend_x + 28}" y="{y + 4}">{"SQLite" if backend == "sqlite" else "PostgreSQL" if backend == "postgres" else html.escape(backend)}</text>')
        if not points:
            out.append(f'<text x="{left + plot_width / 2}" y="{(plot_top + plot_bottom) / 2}" text-anchor="middle" '
                       f'fill="#666">no records</text>')
    out.append(f'<text x="{left}" y="{height - 12}" fill="#666" font-size="10">Points: medians; vertical bars: '
               f'min..max of the repetitions. x: commits in the order of their first record.</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("commit", help="print the commit as records name it")
    add = commands.add_parser("add", help="append the median of values as one record")
    add.add_argument("--workload", required=True)
    add.add_argument("--figure", required=True)
    add.add_argument("--unit", required=True)
    add.add_argument("--backend", default="-", choices=["sqlite", "postgres", "-"])
    add.add_argument("--commit", default=None, help="default: the current commit")
    add.add_argument("--file", default=RESULTS)
    add.add_argument("values", nargs="+", type=float)
    draw = commands.add_parser("chart", help="draw the W1/W2 chart from the record")
    draw.add_argument("--file", default=RESULTS)
    draw.add_argument("--out", default=CHART)
    args = parser.parse_args()

    if args.command == "commit":
        print(current_commit())
    elif args.command == "add":
        line = record_line(args.workload, args.figure, args.values, args.unit, args.backend,
                           args.commit or current_commit())
        os.makedirs(os.path.dirname(os.path.abspath(args.file)), exist_ok=True)
        with open(args.file, "a") as f:
            f.write(line + "\n")
        print(line)
    elif args.command == "chart":
        source = os.path.relpath(args.file, ROOT) if os.path.abspath(args.file).startswith(ROOT + os.sep) else args.file
        svg = chart(read_records(args.file), source)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(svg)
        print(f"wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
