# py_workload: a small interpreter-heavy workload for the segfit benchmark
# suite: dicts, lists, strings, and json round-trips. Output is
# deterministic (the runner sets PYTHONHASHSEED=0 and hashes stdout).
# usage: python3 py_workload.py [scale]
import json
import sys

scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
rounds = max(1, int(60 * scale))

state = 12345


def rnd(n):
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 33) % n


words = ["".join(chr(97 + rnd(26)) for _ in range(3 + rnd(8))) for _ in range(2000)]
total = 0
for r in range(rounds):
    # dict of lists of strings
    index = {}
    for i in range(6000):
        w = words[rnd(len(words))]
        index.setdefault(w[:2], []).append(w + str(i))
    # string building and splitting
    text = " ".join(v for k in sorted(index) for v in index[k][:5])
    parts = text.split(" ")
    total += len(parts) + sum(len(p) for p in parts[::7])
    # json round-trip of nested records
    records = [
        {"id": i, "name": words[i % len(words)], "tags": [words[(i * 7) % len(words)]] * (i % 4),
         "score": (i * 37) % 101 / 7.0}
        for i in range(1500)
    ]
    blob = json.dumps(records, sort_keys=True)
    back = json.loads(blob)
    total += len(blob) + sum(rec["id"] for rec in back if rec["score"] > 7)
    # list churn: sort, slice, comprehension
    nums = [rnd(1 << 20) for _ in range(5000)]
    nums.sort()
    total += nums[len(nums) // 2] + len([n for n in nums if n & 1])
    if r % 10 == 0:
        print(r, total)
print("checksum", total)
