"""The one-to-one transform of the pipeline benchmark (scripts/bench.sh,
BENCH_ONLY=pipeline) as a kswarm --output-topic handler: "x" + each input
line, the map of scripts/bench/StreamsMap.java. It reads whatever input is
there and writes the results of a whole read at once (one write per read,
not per line: `sed -u`, which reads its input a byte at a time, spends
about 30 us of CPU per record on that alone). Each result line is also the
acknowledgement of its record.
"""
import os

rest = b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    lines = (rest + chunk).split(b"\n")
    rest = lines.pop()
    os.write(1, b"".join(b"x" + line + b"\n" for line in lines))
