#!/usr/bin/env python3
"""Turns peer_bench's results.jsonl into results.md (tables with Latchkey/peer
ratios) and peers.png (gnuplot bar chart). Usage: report.py DIR

With several rounds (run.sh --rounds N; each row carries its "round"), every
figure is the median over the rounds, and each Latchkey/peer ratio is the
median of the per-round ratios, followed by their range."""
import json
import os
import statistics
import subprocess
import sys

out = sys.argv[1]
all_rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip()]
for r in all_rows:
    r.setdefault("round", 1)
ROUNDS = sorted({r["round"] for r in all_rows})


def key(r):
    w = "W4" if r["nodes"] > 1 and r["workload"] == "W1" else r["workload"]
    return w, r["clients"]


def group_of(r):
    return r["system"], r["nodes"], r["label"], key(r)


def median_row(rs):
    """One row standing for a group's rounds: numeric fields are medians,
    counts of failures (errors, overlaps, lost updates) are sums."""
    if len(rs) == 1:
        return dict(rs[0])
    m = dict(sorted(rs, key=lambda r: r.get("ops_per_s", 0))[len(rs) // 2])
    for f, v in rs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and f != "round":
            vals = [r[f] for r in rs if isinstance(r.get(f), (int, float))]
            if f in ("errors", "overlaps", "lost_updates"):
                m[f] = sum(vals)
            elif vals:
                m[f] = statistics.median(vals)
                if all(isinstance(v, int) for v in vals):
                    m[f] = round(m[f])  # counts stay whole numbers
    m["per_round"] = {r["round"]: r for r in rs}
    return m


groups = {}
for r in all_rows:
    groups.setdefault(group_of(r), []).append(r)
rows = [median_row(rs) for rs in groups.values()]


def diagnostic(r):
    """run.sh's latchkey-ram rows: Latchkey with its log on tmpfs, compared
    with the durable Latchkey rows like a peer."""
    return r["label"].endswith("(diagnostic)")


def reference(r):
    return r["system"] == "latchkey" and not diagnostic(r)


def find(system, nodes, w, c):
    for r in rows:
        if (r["system"] == system and r["nodes"] == nodes and key(r) == (w, c)
                and not diagnostic(r)):
            return r
    return None


def round_ratio(lk, r, value):
    """Latchkey/peer of value(row): the median of the per-round ratios and,
    over several rounds, their range."""
    if not lk or not r:
        return "-"
    if "per_round" not in lk or "per_round" not in r:
        return ratio(value(lk), value(r))
    rs = [value(lk["per_round"][n]) / value(r["per_round"][n]) for n in ROUNDS
          if n in lk["per_round"] and n in r["per_round"]
          and value(lk["per_round"][n]) and value(r["per_round"][n])]
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"


def fmt(x):
    return f"{x:,.0f}".replace(",", " ")


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


lines = []
pinning = ""
machine = os.path.join(out, "machine.txt")
if os.path.exists(machine):
    for l in open(machine):
        if l.startswith("seconds per row"):
            pinning = l.split(";")[-1].strip()
if os.path.exists(machine):
    lines += ["```"] + open(machine).read().splitlines() + ["```", ""]
if len(ROUNDS) > 1:
    lines += [f"{len(ROUNDS)} rounds: every figure is the median over the rounds; a "
              "Latchkey/peer ratio is the median of the per-round ratios (range in "
              "brackets). Errors, overlaps and lost updates are summed.", ""]

lines += ["### W1 uncontended (W4: 3 nodes) and W2 one contended lock", "",
          "Latchkey/peer = Latchkey's ops/s divided by the row's (1-node Latchkey for W1/W2, "
          "3-node for W4); above 1 means Latchkey is faster.", "",
          "| workload | C | system | ops/s | p50 µs | p99 µs | errors | W2 overlaps / lost "
          "updates / max:min per client | Latchkey/peer |",
          "|---|---:|---|---:|---:|---:|---:|---|---:|"]
if any(diagnostic(r) for r in rows):
    lines[-2:-2] = ["For the row with the log in RAM (run.sh's latchkey-ram, not durable): "
                    "durable Latchkey divided by it, i.e. the share of that speed the disk's "
                    "writes leave.", ""]
order = {"W1": 0, "W2": 1, "W4": 2}
for r in sorted((r for r in rows if key(r)[0] in order),
                key=lambda r: (order[key(r)[0]], r["clients"], not reference(r), r["label"])):
    w, c = key(r)
    lk = find("latchkey", 3 if w == "W4" else 1, w, c)
    extra = ""
    if w == "W2":
        extra = f'{r["overlaps"]} / {r["lost_updates"]} / {r["fair_max"]}:{r["fair_min"]}'
    rat = "" if reference(r) else round_ratio(lk, r, lambda x: x["ops_per_s"])
    lines.append(f'| {w} | {c} | {r["label"]} | {fmt(r["ops_per_s"])} | {fmt(r["p50_us"])} | '
                 f'{fmt(r["p99_us"])} | {r["errors"]} | {extra} | {rat} |')

timed = [r for r in rows if r["system"] == "latchkey" and r.get("log_appends")]
if timed:
    lines += ["", "### Latchkey's Raft log appends per row", "",
              "From the server's own timing (`latchkey status`, \"log writes\"; "
              "3 nodes: the node the first client talks to): appends per acquire+release pair "
              "and their mean time from hand-over to the disk until durable, including the "
              "wait behind the write in progress.", "",
              "| workload | C | nodes | appends per pair | mean append µs |",
              "|---|---:|---:|---:|---:|"]
    for r in sorted(timed, key=lambda r: (order.get(key(r)[0], 9), r["clients"])):
        w, c = key(r)
        nodes = f'{r["nodes"]}' + (" (log in RAM)" if diagnostic(r) else "")
        lines.append(f'| {w} | {c} | {nodes} | {r["log_appends"] / max(r["ops"], 1):.2f} | '
                     f'{fmt(r["log_append_mean_us"])} |')

w3 = [r for r in rows if r["workload"] == "W3"]
if w3:
    lk = next((r for r in w3 if reference(r)), None)
    lines += ["", "### W3 held locks", "",
              "Each system on a fresh server. Server RSS (VmRSS) read before the first "
              "acquire and once all are held; bytes/lock = growth / locks held. Settled: the "
              "lowest RSS seen in the next seconds with the locks still held (Latchkey drops "
              "the Raft log it keeps in memory at its next snapshot: every 65 536 entries, or "
              "2 s after writes stop, design 0018). Latchkey/peer: time ratio "
              "(below 1 = Latchkey faster) and bytes/lock ratios, right after the last "
              "acquire and settled (below 1 = Latchkey smaller).",
              "",
              "| system | clients | locks held | time s | RSS before MiB | RSS after MiB | "
              "bytes/lock | settled bytes/lock | errors | Latchkey/peer time | "
              "Latchkey/peer bytes | Latchkey/peer settled bytes |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def per_lock(r, after="rss_after_kb"):
        kb = r.get(after) or r["rss_after_kb"]
        return (kb - r["rss_before_kb"]) * 1024 / r["ops"] if r["ops"] else 0

    settled = "rss_settled_kb"
    for r in sorted(w3, key=lambda r: (r["system"] != "latchkey", r["label"])):
        rt = rb = rs = ""
        if lk and r["system"] != "latchkey":
            rt = round_ratio(lk, r, lambda x: x["seconds"])
            rb = round_ratio(lk, r, lambda x: max(per_lock(x), 0))
            rs = round_ratio(lk, r, lambda x: max(per_lock(x, settled), 0))
        lines.append(f'| {r["label"]} | {r["clients"]} | {r["ops"]} | {r["seconds"]:.2f} | '
                     f'{r["rss_before_kb"] / 1024:.1f} | {r["rss_after_kb"] / 1024:.1f} | '
                     f'{per_lock(r):.0f} | {per_lock(r, settled):.0f} | '
                     f'{r["errors"]} | {rt} | {rb} | {rs} |')

open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# Chart: ops/s per system, one cluster of bars per (workload, C); log scale.
groups = sorted({key(r) for r in rows if key(r)[0] in order},
                key=lambda k: (order[k[0]], k[1]))
labels = []
for r in rows:
    if key(r)[0] in order and r["label"] not in labels:
        labels.append(r["label"])
labels.sort(key=lambda l: not l.startswith("latchkey"))
dat = os.path.join(out, "peers.dat")
with open(dat, "w") as f:
    f.write("group " + " ".join(f'"{l}"' for l in labels) + "\n")
    for g in groups:
        vals = []
        for l in labels:
            r = next((r for r in rows if r["label"] == l and key(r) == g), None)
            vals.append(f'{r["ops_per_s"]:.1f}' if r and r["ops_per_s"] > 0 else "NaN")
        f.write(f'"{g[0]} C={g[1]}" ' + " ".join(vals) + "\n")
script = f"""
set terminal pngcairo size 1200,600 font ",10"
set output "{os.path.join(out, 'peers.png')}"
set title "Lock acquire+release pairs/s (W1, W4) and handoffs/s (W2), higher is better\\n{pinning}; noisy shared VM"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel "ops/s (log scale)"
set key outside right top
set grid ytics
set xtics rotate by -30
plot for [i=2:{len(labels) + 1}] "{dat}" using i:xtic(1) title columnheader(i)
"""
try:
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
except (OSError, subprocess.CalledProcessError) as e:
    print(f"chart not drawn: {e}", file=sys.stderr)
