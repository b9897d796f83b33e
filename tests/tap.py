# SPDX-License-Identifier: MIT
# tap.py -- the Test Anything Protocol lines the Python test scripts print
_count = 0
_failed = 0


def ok(cond, desc):
    """One test line; returns cond so a script can stop on a failure."""
    global _count, _failed
    _count += 1
    if not cond:
        _failed += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (_count, desc), flush=True)
    return cond


def skip(desc, n=1):
    global _count
    for _ in range(n):
        _count += 1
        print("ok %d # skip %s" % (_count, desc), flush=True)


def done():
    """Prints the plan; the exit status for the script."""
    print("1..%d" % _count)
    return 1 if _failed else 0
