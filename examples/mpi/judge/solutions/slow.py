# Correct, but quadratic: too slow on the large cases.
import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
xs = list(map(int, data[1:1 + n]))
best = None
for i in range(n):
    above = 0
    for j in range(n):
        if xs[j] > xs[i]:
            above += 1
    if above == 0:
        best = xs[i]
print(sum(xs), best)
