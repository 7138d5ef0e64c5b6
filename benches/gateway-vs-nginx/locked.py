"""Atomic read-modify-write instructions per request, from a callgrind file.

Used by benches/instructions.sh (ATOMICS=1): callgrind, run with
--dump-instr=yes, counts how often each instruction of the door's binary
ran; objdump says which of them are atomic read-modify-writes (a `lock`
prefix, or `xchg` with memory, which locks implicitly). Each costs as much
as dozens of plain instructions and is counted once by callgrind, so the
instruction count hides them (docs/benchmarks.md, "Atomic instructions").
Only the door's own binary is counted, not the shared libraries.

    python3 locked.py CALLGRIND_FILE BINARY REQUESTS [TOP]
"""
import collections
import re
import subprocess
import sys

path, binary, requests = sys.argv[1], sys.argv[2], float(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 0

locked = {}
listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-M", "intel", binary],
                         capture_output=True, text=True, check=True).stdout
for line in listing.splitlines():
    match = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)", line)
    if not match:
        continue
    mnemonic, operands = match.group(2), match.group(3)
    if mnemonic == "lock":
        locked[int(match.group(1), 16)] = operands.split()[0] if operands else "lock"
    elif mnemonic.startswith("xchg") and "[" in operands:
        locked[int(match.group(1), 16)] = "xchg"

by_function = collections.Counter()
by_kind = collections.Counter()
names = {}
current_object = function_object = function = None
skip_next = False
for line in open(path, errors="replace"):
    if line.startswith("ob="):
        current_object = line[3:].strip()
    elif line.startswith("fn="):
        function, function_object = line[3:].strip(), current_object
    elif line.startswith("calls="):
        skip_next = True  # the next line is the call's inclusive cost
    elif line.startswith("0x"):
        if skip_next:
            skip_next = False
            continue
        fields = line.split()
        if function_object and function_object.endswith(binary.rsplit("/", 1)[-1]) and len(fields) >= 3:
            kind = locked.get(int(fields[0], 16))
            if kind:
                by_function[function] += int(fields[2])
                by_kind[kind] += int(fields[2])

total = sum(by_kind.values())
kinds = ", ".join(f"{kind} {count / requests:.0f}" for kind, count in by_kind.most_common())
print(f"         atomic read-modify-writes per request: {total / requests:.0f} ({kinds})")
for function, count in by_function.most_common(top):
    print(f"         {count / requests:8.1f}  {function[:150]}")
