"""TAP for the scripts that start their own nginx: ok() numbers and prints
each assertion, plan() prints the plan and says whether all passed."""

count = 0
failed = 0


def ok(cond, name):
    global count, failed
    count += 1
    if not cond:
        failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", count, name), flush=True)
    return cond


def skip(name, reason):
    """An assertion that makes no sense here: it passes, with the reason."""
    global count
    count += 1
    print("ok %d - %s # skip %s" % (count, name, reason), flush=True)


def plan():
    """Prints "1..n"; returns the exit status: 0 when every one passed."""
    print("1..%d" % count)
    return 1 if failed else 0
