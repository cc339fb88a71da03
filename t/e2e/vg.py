"""TEST_NGINX_USE_VALGRIND for the scripts that start their own nginx.

The same command as t/lib/Test/Nginx/Util.pm builds: memcheck with the
same options and t/valgrind.suppress (plus TEST_NGINX_VALGRIND_SUPPRESS
and TEST_NGINX_VALGRIND_OPTS; a non-numeric TEST_NGINX_USE_VALGRIND is
the whole option list), nginx in the foreground, one log per process in
the prefix's logs/, and the same pattern for an error record.
"""

import glob
import os
import re
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

USE = os.environ.get("TEST_NGINX_USE_VALGRIND", "")
if USE == "0":
    USE = ""

# the suite's one slowness factor (util/run-tests: 10 under valgrind):
# timeouts grow by it; pauses that only let nginx catch up by a third of it
SLOW = int(os.environ.get("TEST_NGINX_SLOW_FACTOR") or (10 if USE else 1))
PAUSE = max(1, SLOW * 3 // 10)

ERROR_RE = re.compile(
    r"Invalid (?:read|write|free)|uninitialised|definitely lost"
    r"|Mismatched free|Source and destination overlap|Syscall param"
    r"|Jump to the invalid address|Process terminating|fishy"
    r"|Illegal memory pool")


def command(logdir):
    """The valgrind prefix of the nginx command line, or []."""
    if not USE:
        return []
    cmd = ["valgrind", "-q"]
    if USE.isdigit():
        cmd += ["--tool=memcheck", "--leak-check=full",
                "--show-leak-kinds=definite",
                "--errors-for-leak-kinds=definite", "--num-callers=30",
                "--keep-debuginfo=yes", "--gen-suppressions=all",
                "--error-exitcode=97"]
        supp = [os.path.join(ROOT, "t", "valgrind.suppress"),
                os.path.join(ROOT, "valgrind.suppress")]
        supp += os.environ.get("TEST_NGINX_VALGRIND_SUPPRESS", "").split()
        cmd += ["--suppressions=" + s for s in supp if os.path.isfile(s)]
    else:
        cmd += USE.split()
    cmd += os.environ.get("TEST_NGINX_VALGRIND_OPTS", "").split()
    cmd.append("--log-file=" + os.path.join(logdir, "valgrind.%p.log"))
    return cmd


def clean(logdir):
    for f in glob.glob(os.path.join(logdir, "valgrind.*.log")):
        os.unlink(f)


def start(nginx_cmd, logdir, port):
    """Starts nginx: as a daemon without valgrind (returns None), in the
    foreground under valgrind (returns the Popen once the port answers).
    Raises with nginx's stderr when it does not start."""
    if not USE:
        r = subprocess.run(nginx_cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return None

    clean(logdir)
    p = subprocess.Popen(command(logdir) + nginx_cmd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(p.stderr.read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError("nginx under valgrind did not listen in 60 s")


def wait(proc, timeout=60):
    """Waits for nginx under valgrind to exit (the leak check runs then);
    returns its exit status, or None if it had to be killed."""
    if proc is None:
        return 0
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def errors(logdir):
    """The valgrind logs that hold an error record: [(file, text)]."""
    bad = []
    for f in sorted(glob.glob(os.path.join(logdir, "valgrind.*.log"))):
        with open(f, errors="replace") as fh:
            text = fh.read()
        if ERROR_RE.search(text):
            bad.append((f, text))
    return bad


def check(ok, logdir, status):
    """One TAP assertion when valgrind is on: no error record in any log
    and not valgrind's error exit code; the records go out as comments."""
    if not USE:
        return
    bad = errors(logdir)
    n = len(glob.glob(os.path.join(logdir, "valgrind.*.log")))
    for f, text in bad:
        print("# %s:" % f)
        for line in text[:20000].splitlines():
            print("# " + line)
    ok(not bad and status != 97,
       "valgrind reports no error (%d process logs, exit status %s)"
       % (n, status))
