"""Benchmark workload 3: builtin-heavy.

A loop dominated by calls to builtins and methods of builtin types (len,
isinstance, list.append, dict.get, str methods, min/max, abs, ...), with
no Python-level calls inside the loop: a profiler sees C_CALL/C_RETURN
events (setprofile) or CALL/C_RETURN events (sys.monitoring) almost
exclusively.

Usage: python builtin_heavy.py [SCALE]   (SCALE multiplies the work; default 1)
Prints the work's own CPU time (BENCH_CPU_SECONDS <s>) and, as the last
line, its wall time: BENCH_SECONDS <s>.
"""
import sys
import time

SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "el", "an"]


def make_words(count):
    # Deterministic, varied words: "kalo", "mi-ne-su", ...
    words = []
    for i in range(count):
        parts = []
        j = i
        while True:
            parts.append(SYLLABLES[j % 10])
            j //= 10
            if j == 0:
                break
        sep = "-" if i % 3 == 0 else ""
        words.append(sep.join(parts))
    return words


def work(scale):
    words = make_words(1000)
    values = [None, 3, "x", 2.5, (1, 2), [3], {"k": 1}]
    n = int(150000 * scale)
    out = []
    counts = {}
    total = 0
    longest = ""
    for i in range(n):
        w = words[i % 1000]
        v = values[i % 7]
        if isinstance(v, (int, float)):
            total += abs(int(v))
        elif isinstance(v, str):
            total += len(v)
        counts[w] = counts.get(w, 0) + 1
        if len(w) > 4 and w.startswith("k"):
            out.append(w.upper())
        else:
            out.append(w.strip("-"))
        total += max(len(w), 3) - min(i & 7, 5)
        parts = w.split("-")
        total += len(parts)
        if len(w) > len(longest):
            longest = w
    return total, len(out), len(counts), longest, sorted(counts.items())[:3]


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    t0, c0 = time.perf_counter(), time.process_time()
    result = work(scale)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print("result %r" % (result,))
    print("BENCH_CPU_SECONDS %.6f" % cpu)
    print("BENCH_SECONDS %.6f" % elapsed)


if __name__ == "__main__":
    main()
