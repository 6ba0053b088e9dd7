#!/usr/bin/env python3
"""Cost centres of a check from a CPU profile of node processes.

    perf record -F 499 -g -p PID1,PID2,PID3 -o FILE -- sleep 8   # under load
    perf script -i FILE | python3 scripts/costcentres.py CPU_US_PER_CHECK

CPU_US_PER_CHECK is the nodes' CPU time (user + system, from /proc/PID/stat)
over the run divided by the requests wrk completed. Every sample is put in
one centre: first by what owns the whole stack (the collector, replication,
handoffs, gossip), then by the innermost frame of the project or of a
library it calls, so that a system call is charged to the code that made it
(a write of an HTTP response to the HTTP server, of a forwarded check to
the RPC client). Samples of the scheduler and the runtime's monitor, which
serve everyone, form a centre of their own. Prints each centre's share of
the samples and its µs of CPU per check.
"""
import collections
import re
import sys
cats = [
 ("timers/deadlines", r"SetReadDeadline|SetWriteDeadline|SetDeadline|runtime\.(modtimer|addtimer|deltimer|resettimer|\(\*timer\))|time\.\(\*Timer\)|time\.NewTimer|time\.AfterFunc"),
 ("metrics", r"prometheus|ratemesh/.*[mM]etric"),
 ("stats/top-k", r"nodeapi\.\(\*?(stats|topk|Stats|hitter|counters|Counters)|nodeapi\..*(stats|topk|Observe|observe)|countwhen|httpapi\.\(\*Counters"),
 ("local decision", r"ratemesh/bucket\."),
 ("replication", r"cluster\.\(\*?replic|cluster\..*[Rr]eplica|serverConn\)\.merge|[dD]ecodeMergeRequest|[eE]ncodeMergeRequest|\(\*Client\)\.Merge|Store\)\.(Replace|Export)|cluster\.\(\*Cluster\)\.Merge"),
 ("leases", r"cluster\.\(\*?lease|cluster\..*[lL]ease"),
 ("RPC client", r"(cluster|internal)/rpc\.\(\*(Client|clientConn|call)\)|internal/rpc\.(\(\*codec\)\.(encodeCheckRequest|decodeCheckResponse))"),
 ("RPC server", r"(cluster|internal)/rpc\.\(\*(serverConn|reader|Server|codec)\)|(cluster|internal)/rpc\."),
 ("cluster routing", r"ratemesh/cluster\.|ratemesh/ring\.|ratemesh/ratemesh\.|ratemesh\.\(\*Node\)"),
 ("key extraction", r"httpapi\..*[kK]ey"),
 ("middleware", r"ratemesh/httpapi\.|internal/ratehttp|internal/denycache"),
 ("routing (Echo)", r"echo/v4\.\(\*Router\)|echo/v4\.\(\*node\)"),
 ("handler (demo)", r"ratemesh/demo|internal/demo|encoding/json"),
 ("HTTP server", r"net/http\.|echo/v4|connlimit|net/textproto|bufio\.|net\.\(\*conn\)|net\.\(\*netFD\)"),
 ("gossip", r"memberlist|hashicorp"),
]
owners = [(n, re.compile(p)) for n, p in [
 ("replication", r"cluster\.\(\*?replic|serverConn\)\.merge|[dD]ecodeMergeRequest|[eE]ncodeMergeRequest|\(\*Client\)\.Merge|cluster\.\(\*Cluster\)\.Merge"),
 ("handoff (joins)", r"handoff|cluster\.\(\*Cluster\)\.(pull|transfer)"),
 ("gossip", r"memberlist|hashicorp"),
]]
cre = [(n, re.compile(p)) for n, p in cats]
gc = re.compile(r"runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcStart|markroot|gcDrain|scanobject)")
alloc = re.compile(r"runtime\.(mallocgc|newobject|makeslice|growslice|rawstring|makemap|concatstring|slicebytetostring)")
sched = re.compile(r"runtime\.(schedule|findRunnable|park_m|mcall|sysmon|gopark|goready|wakep|startm|notesleep|netpoll|gosched|goexit|stopm|mstart|ready|runqsteal|usleep|futex)")
tot = collections.Counter(); allocs = collections.Counter(); n = 0
def flush(frames):
    global n
    if not frames: return
    n += 1
    s = "\n".join(frames)
    if gc.search(s): tot["GC"] += 1; return
    for name, r in owners:
        if r.search(s): tot[name] += 1; return
    cat = None
    for f in frames:
        for name, r in cre:
            if r.search(f): cat = name; break
        if cat: break
    if cat is None:
        cat = "scheduler/runtime" if sched.search(s) else "other"
    if alloc.search(s): allocs[cat] += 1
    tot[cat] += 1
frames = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush(frames); frames = []; continue
    if line[0] not in " \t":
        continue  # header
    parts = line.strip().split(None, 1)
    if len(parts) == 2: frames.append(parts[1])
flush(frames)
cpu = float(sys.argv[1]) if len(sys.argv) > 1 else 0
print("samples", n)
for k, v in tot.most_common():
    print(f"{k:20s} {100*v/n:5.1f}%  {cpu*v/n:6.1f} us   (of it in allocation {100*allocs[k]/n:4.1f}%)")
