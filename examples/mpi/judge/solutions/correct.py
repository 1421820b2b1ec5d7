# Reads n and n integers; prints their sum and their maximum.
import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
xs = list(map(int, data[1:1 + n]))
print(sum(xs), max(xs))
