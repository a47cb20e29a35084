# A python3 allocation workload with deterministic output: dicts, lists, strings, objects,
# json round trips, regexes and threads.
import json, re, threading, hashlib

def churn(n):
    d = {}
    for i in range(n):
        d["k%d" % i] = [i, str(i) * (i % 17), {"x": i}]
        if i % 3 == 0:
            d.pop("k%d" % (i // 2), None)
    return d

h = hashlib.sha256()
for r in range(8):
    d = churn(60000)
    s = json.dumps(d, sort_keys=True)
    h.update(s.encode())
    back = json.loads(s)
    assert back == json.loads(json.dumps(d, sort_keys=True))
    words = re.findall(r"k\d+5", s)
    h.update(str(len(words)).encode())

class Node:
    __slots__ = ("l", "r")
    def __init__(self, l, r):
        self.l, self.r = l, r

def tree(depth):
    return Node(None, None) if depth == 0 else Node(tree(depth - 1), tree(depth - 1))

def count(t):
    return 1 if t.l is None else 1 + count(t.l) + count(t.r)

results = [0] * 4
def worker(k):
    total = 0
    for _ in range(6):
        total += count(tree(14))
        total += len("".join(str(i) for i in range(20000)))
    results[k] = total

ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(h.hexdigest(), results)
