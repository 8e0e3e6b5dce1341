"""Splits a loop's events into per-iteration numbers, for the benchmarks.

Usage: split_events.py EVENTS TOOL CPU-SAMPLES
  EVENTS       .proctor/events.jsonl (TOOL proctor) or .lute/events.jsonl (lute)
  CPU-SAMPLES  "unix-time busy-ticks" lines (benches/run.sh's sampler), or
               /dev/null
Prints one JSON object: iterations, the median and mean wall time from one
exam's end to the next's, the agent's median time, the machine's CPU per
iteration (when sampled), and for proctor the exam's time and proctor's own.
"""
import bisect, json, os, sys, statistics
from datetime import datetime
path, tool, samples = sys.argv[1], sys.argv[2], sys.argv[3]
events = [json.loads(l) for l in open(path) if l.strip()]
def ts(e):
    t = e["ts"]
    return t if isinstance(t, (int, float)) else datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
kind = "type" if tool == "proctor" else "ev"
checks = [e for e in events if e.get(kind) in ("check_result", "check")]
agents = [e for e in events if e.get(kind) == "agent_end"]
walls = [ts(b) - ts(a) for a, b in zip(checks, checks[1:])]
agent = [e["secs"] for e in agents]
exam = [e["secs"] for e in checks[1:]] if tool == "proctor" else []
n = len(walls)
out = {"iterations": n, "wall_ms": 1000 * statistics.median(walls), "mean_wall_ms": 1000 * sum(walls) / n,
       "agent_ms": 1000 * statistics.median(agent)}
# The machine's CPU (every process, every core) from the first exam's end
# to the last one's, per iteration, interpolated between 20 ms samples.
points = [tuple(map(float, l.split())) for l in open(samples) if len(l.split()) == 2]
def busy_at(t):
    times = [p[0] for p in points]
    i = min(max(bisect.bisect_left(times, t), 1), len(points) - 1)
    (t0, b0), (t1, b1) = points[i - 1], points[i]
    return b0 + (b1 - b0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)
if len(points) >= 2 and n:
    ticks = busy_at(ts(checks[-1])) - busy_at(ts(checks[0]))
    out["cpu_ms"] = ticks * 1000 / os.sysconf("SC_CLK_TCK") / n
if exam:
    own = [w - a - x for w, a, x in zip(walls, agent, exam)]
    out.update(exam_ms=1000 * statistics.median(exam), own_ms=1000 * statistics.median(own),
               own_share=sum(own) / sum(walls))
print(json.dumps(out))
