"""Medians per scenario and front door from the bench's results
(round, scenario, door, req/s, p50 ms, p99 ms, CPU µs per request, of which
system time), printed
as Markdown tables ready to paste into docs/benchmarks.md."""
import collections, os, statistics, sys

results, reference, work = sys.argv[1], sys.argv[2], sys.argv[3]
rows = collections.defaultdict(list)
# (round, scenario, door) → (req/s, p99 ms, CPU µs per request)
by_round = {}
scenarios, doors = [], []
for line in open(results):
    rnd, scenario, door, rps, p50, p99, cpu, system = line.split("\t")
    rows[scenario, door].append((float(rps), float(p50), float(p99), float(cpu), float(system)))
    by_round[rnd, scenario, door] = (float(rps), float(p99), float(cpu))
    if scenario not in scenarios:
        scenarios.append(scenario)
    if door not in doors:
        doors.append(door)
med = {key: [statistics.median(v[i] for v in values) for i in range(5)] for key, values in rows.items()}

def ratio(scenario, a, b, i):
    if (scenario, a) not in med or (scenario, b) not in med or med[scenario, b][i] == 0:
        return "–"
    return f"{med[scenario, a][i] / med[scenario, b][i]:.2f}"

def resumed(scenario, door):
    path = os.path.join(work, f"resumed-{scenario}-{door}")
    if not os.path.exists(path):
        return None
    return statistics.median(float(x) for x in open(path).read().split())

print()
print(f"| scenario | gateway ÷ {reference}: req/s, p50, p99 | gw-full ÷ nginx-full: req/s, p50, p99 | CPU µs/request: " + " / ".join(doors) + " |")
print("|---|---|---|---|")
for s in scenarios:
    cpu = " / ".join(f"{med[s, d][3]:.1f}" if (s, d) in med else "–" for d in doors)
    print(f"| {s} | {ratio(s, 'gateway', reference, 0)}, {ratio(s, 'gateway', reference, 1)}, {ratio(s, 'gateway', reference, 2)}"
          f" | {ratio(s, 'gw-full', 'nginx-full', 0)}, {ratio(s, 'gw-full', 'nginx-full', 1)}, {ratio(s, 'gw-full', 'nginx-full', 2)}"
          f" | {cpu} |")
if any(d == "gw-base" for d in doors):
    print()
    print("| scenario | gateway ÷ gw-base: req/s, p50, p99, CPU µs/request |")
    print("|---|---|")
    for s in scenarios:
        print(f"| {s} | {ratio(s, 'gateway', 'gw-base', 0)}, {ratio(s, 'gateway', 'gw-base', 1)}, {ratio(s, 'gateway', 'gw-base', 2)}, {ratio(s, 'gateway', 'gw-base', 3)} |")
if any(d == "floor" for d in doors):
    # The same round's floor: how far the gateway is above what its stack
    # costs, and where the stack itself stands against the reference.
    paired = collections.defaultdict(list)
    for (rnd, scenario, door), (_, _, cpu) in by_round.items():
        if door == "gateway" and (rnd, scenario, "floor") in by_round:
            paired[scenario].append(cpu / by_round[rnd, scenario, "floor"][2])
    print()
    print(f"| scenario | CPU per request: gateway ÷ floor, per round | median | floor ÷ {reference} |")
    print("|---|---|---:|---:|")
    for s in scenarios:
        rounds = ", ".join(f"{r:.2f}" for r in paired[s])
        median = f"{statistics.median(paired[s]):.2f}" if paired[s] else "–"
        print(f"| {s} | {rounds} | {median} | {ratio(s, 'floor', reference, 3)} |")

# The performance target (docs/benchmarks.md, "Five scenarios against nginx
# and HAProxy"): in each round, the gateway's CPU per request against the
# lower of nginx's and HAProxy's in that round, its requests/s and p99
# against nginx's; the medians over at least five rounds decide.
targets = [d for d in ("nginx", "haproxy") if d in doors]
if "gateway" in doors and targets:
    print()
    against = f"{targets[0]}'s" if len(targets) == 1 else "the round's lower of nginx's and HAProxy's"
    print(f"| scenario | CPU ÷ {against}, per round | median | req/s ÷ nginx | p99 ÷ nginx | target |")
    print("|---|---|---:|---:|---:|---|")
    for s in scenarios:
        cpu, rps, p99 = [], [], []
        for rnd in sorted({r for (r, sc, _) in by_round if sc == s}, key=int):
            ours = by_round.get((rnd, s, "gateway"))
            refs = [by_round[rnd, s, d] for d in targets if (rnd, s, d) in by_round]
            if ours is None or not refs:
                continue
            cpu.append(ours[2] / min(ref[2] for ref in refs))
            if (rnd, s, "nginx") in by_round:
                nginx = by_round[rnd, s, "nginx"]
                rps.append(ours[0] / nginx[0])
                p99.append(ours[1] / nginx[1])
        if not cpu:
            continue
        medians = [statistics.median(v) if v else None for v in (cpu, rps, p99)]
        cpu_m, rps_m, p99_m = medians
        missed = []
        if cpu_m > 1.0:
            missed.append("CPU")
        if rps_m is not None and rps_m < 1.0:
            missed.append("req/s")
        if p99_m is not None and p99_m > 1.0:
            missed.append("p99")
        verdict = "met" if not missed else "missed: " + ", ".join(missed)
        if len(cpu) < 5:
            verdict += f" (only {len(cpu)} rounds; the target asks for 5)"
        show = lambda v: "–" if v is None else f"{v:.2f}"
        print(f"| {s} | {', '.join(f'{r:.2f}' for r in cpu)} | {show(medians[0])} | {show(medians[1])}"
              f" | {show(medians[2])} | {verdict} |")

print()
print("| scenario | door | req/s | p50 ms | p99 ms | CPU µs/req | of which system (kernel) µs/req | resumed % |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for s in scenarios:
    for d in doors:
        if (s, d) not in med:
            continue
        rps, p50, p99, cpu, system = med[s, d]
        r = resumed(s, d)
        print(f"| {s} | {d} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {system:.1f} | {'' if r is None else f'{r:.0f}'} |")
