# Crashes when the input is large: indexes past the end.
import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
xs = list(map(int, data[1:1 + n]))
if n > 1500:
    xs[n]
print(sum(xs), max(xs))
