"""An nginx with a master process under a test's prefix: its command, a
signal to it, its master's pid, whether a process still lives, and its
stop, which waits for every process of it; a test's run against it and
the error log's check at the end."""

import asyncio
import os
import shutil
import signal
import subprocess
import time

import vg

import target


def prefix(name):
    """A test's nginx prefix: beside the server root, not in it (the real
    Test::Nginx removes only the directories it made there, and stops with
    "Can't remove t/servroot" when it finds another one: issue 27)."""
    servroot = os.environ.get("TEST_NGINX_SERVROOT",
                              os.path.join(target.ROOT, "t", "servroot"))
    return servroot.rstrip("/") + "-" + name


def nginx_cmd(prefix):
    return [target.NGINX, "-p", prefix + "/", "-c",
            os.path.join(prefix, "nginx.conf")]


def nginx(prefix, *args):
    return subprocess.run(nginx_cmd(prefix) + list(args),
                          capture_output=True, text=True)


def conf_test(prefix, http):
    """nginx -t of a configuration with that http block's content, under
    prefix: the finished process (its stderr has nginx's messages)."""
    path = os.path.join(prefix, "bad.conf")
    with open(path, "w") as f:
        f.write("%s\nerror_log logs/bad.log;\nevents {}\nhttp { %s }\n"
                % (target.LOAD_MODULES, http))
    # -e: the errors before error_log is read go to bad.log too, not to
    # the binary's default log (stderr on Debian, logs/error.log of the
    # prefix on a build with a --prefix), which the runs check
    return subprocess.run([target.NGINX, "-t", "-q", "-p", prefix + "/",
                           "-e", "logs/bad.log", "-c", path],
                          capture_output=True, text=True)


def master_pid(prefix):
    with open(os.path.join(prefix, "logs", "nginx.pid")) as f:
        return int(f.read())


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # under valgrind nginx is this script's child: exited, it is a zombie
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def family(pid):
    """pid and every process descended from it (a master's workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def stop(prefix, sig=signal.SIGQUIT, timeout=10):
    """Stops the nginx of prefix and waits until its master and every
    worker (old ones of a reload too) are gone: sig to the master, then,
    after timeout seconds (times the slowness), KILL to each one left.  A
    worker outlives a master that is killed alone and keeps writing under
    the prefix.  Returns True when sig alone was enough."""
    try:
        pid = master_pid(prefix)
    except (OSError, ValueError):
        return True
    procs = [p for p in family(pid) if alive(p)]
    if not procs:
        return True
    try:
        os.kill(pid, sig)
    except OSError:
        pass
    clean = True
    for t, kill in ((timeout * vg.SLOW, False), (5, True)):
        left = [p for p in procs if alive(p)]
        if kill and left:
            clean = False
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.time() + t
        while time.time() < deadline and any(alive(p) for p in procs):
            time.sleep(0.05)
    return clean


def prepare(prefix, conf, **values):
    """A fresh prefix with logs/ and nginx.conf: conf filled in with the
    target's values (target.CONF), daemon off under valgrind (%(daemon)s)
    and values.  Returns the logs folder and the error log's path."""
    shutil.rmtree(prefix, ignore_errors=True)
    logdir = os.path.join(prefix, "logs")
    os.makedirs(logdir)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf % {**target.CONF, **values,
                        "daemon": "off" if vg.USE else "on"})
    return logdir, os.path.join(logdir, "error.log")


def serve(prefix, port, what, main, ok):
    """Runs main() (a coroutine function) against the nginx of prefix,
    listening on port: started (under valgrind when asked), then stopped
    with every process of it and waited for, whatever happens.  nginx
    that does not start, or a step that raises, is one failed assertion
    (what names the test).  Returns main's result (None when it raised)
    and nginx's exit status for vg.check()."""
    logdir = os.path.join(prefix, "logs")
    try:
        proc = vg.start(nginx_cmd(prefix), logdir, port)
    except RuntimeError as e:
        ok(False, "nginx starts: %s" % e)
        return None, None
    result = None
    try:
        result = asyncio.run(main())
    except Exception as e:  # a failed step must not hide the summary
        ok(False, "%s: %r" % (what, e))
    finally:
        # the master and every worker, the old ones of a reload too
        stop(prefix)
        status = vg.wait(proc)
    return result, status


def no_alert(ok, log):
    """One assertion: the error log has no [alert], [crit] or [emerg].
    Returns the log's text ("" when there is none)."""
    text = open(log).read() if os.path.exists(log) else ""
    ok("[alert]" not in text and "[crit]" not in text and
       "[emerg]" not in text, "no [alert], [crit] or [emerg]")
    return text
