#!/usr/bin/env python3
"""Compares two replay outputs (NDJSON, as in docs/model.md), lines in any order.

Usage: python3 compare_outputs.py EXPECTED.ndjson ACTUAL.ndjson

Indicator lines are matched by (type, zone, hour), clash lines by (type, zone, a, b). Every field
is compared; numbers with a relative tolerance of 1e-9 (absolute 1e-12 near zero), everything
else exactly. Prints the first 20 differences and a summary; exits 1 on any difference.
"""

import json
import math
import sys

REL, ABS = 1e-9, 1e-12
MAX_SHOWN = 20


def key_of(obj):
    t = obj.get("type")
    if t == "clash":
        return ("clash", obj.get("zone"), obj.get("a"), obj.get("b"))
    return (t, obj.get("zone"), obj.get("hour"))


def load(path, problems):
    lines = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                problems.append("%s:%d: not JSON (%s)" % (path, n, e))
                continue
            k = key_of(obj)
            if k in lines:
                problems.append("%s:%d: duplicate line for %r" % (path, n, k))
                continue
            lines[k] = obj
    return lines


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def diff(exp, act, path, out):
    if is_num(exp) and is_num(act):
        if exp == act:
            return
        if not (math.isfinite(exp) and math.isfinite(act)):
            out.append("%s: expected %r, got %r" % (path, exp, act))
        elif abs(exp - act) > max(ABS, REL * max(abs(exp), abs(act))):
            out.append("%s: expected %r, got %r" % (path, exp, act))
        return
    if isinstance(exp, dict) and isinstance(act, dict):
        for k in sorted(set(exp) | set(act)):
            if k not in act:
                out.append("%s.%s: missing in actual (expected %r)" % (path, k, exp[k]))
            elif k not in exp:
                out.append("%s.%s: unexpected in actual (%r)" % (path, k, act[k]))
            else:
                diff(exp[k], act[k], path + "." + k, out)
        return
    if isinstance(exp, list) and isinstance(act, list) and len(exp) == len(act):
        for i, (a, b) in enumerate(zip(exp, act)):
            diff(a, b, "%s[%d]" % (path, i), out)
        return
    if exp != act or type(exp) is not type(act):
        out.append("%s: expected %r, got %r" % (path, exp, act))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    problems = []
    exp = load(sys.argv[1], problems)
    act = load(sys.argv[2], problems)
    missing = [k for k in exp if k not in act]
    extra = [k for k in act if k not in exp]
    differing = 0
    diffs = list(problems)
    for k in missing:
        diffs.append("missing line %r" % (k,))
    for k in extra:
        diffs.append("extra line %r: %s" % (k, json.dumps(act[k])))
    for k in exp:
        if k in act:
            d = []
            diff(exp[k], act[k], "%r" % (k,), d)
            if d:
                differing += 1
                diffs.extend(d)
    for d in diffs[:MAX_SHOWN]:
        print(d)
    if len(diffs) > MAX_SHOWN:
        print("... %d more differences" % (len(diffs) - MAX_SHOWN))
    print("expected %d lines, actual %d lines: %d matched, %d differing, %d missing, %d extra, "
          "%d other problems" % (len(exp), len(act), len(exp) - len(missing) - differing,
                                 differing, len(missing), len(extra), len(problems)))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
