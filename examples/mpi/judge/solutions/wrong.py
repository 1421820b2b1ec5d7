# Forgets that the numbers can be negative: starts the maximum at 0.
import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
xs = list(map(int, data[1:1 + n]))
print(sum(xs), max([0] + xs))
