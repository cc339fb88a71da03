"""An nginx with a master process under a test's prefix: its command, a
signal to it, its master's pid, and whether a process still lives."""

import os
import subprocess


def nginx_cmd(prefix):
    return ["/usr/sbin/nginx", "-p", prefix + "/", "-c",
            os.path.join(prefix, "nginx.conf")]


def nginx(prefix, *args):
    return subprocess.run(nginx_cmd(prefix) + list(args),
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
