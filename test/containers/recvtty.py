#!/usr/bin/python3
# A console socket for runc (`--console-socket SOCKET`), as runc's contrib
# recvtty (not in Debian's runc): it takes every terminal master runc sends
# (`runc run`: the container's new console; `runc restore`: criu's
# orphan-pts-master, the restored container's console), holds it, and
# appends what the container writes on it to LOG; each message is noted in
# LOG.conns ("NAME FDS"). It runs until it is killed.
import os
import socket
import sys
import threading

path, log = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(4)
held = []


def pump(fd):
    with open(log, "ab", buffering=0) as out:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            out.write(data)


while True:
    conn, _ = server.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
    conn.close()
    with open(log + ".conns", "a") as out:
        out.write(f"{msg.decode(errors='replace')} {len(fds)}\n")
    for fd in fds:
        held.append(fd)
        threading.Thread(target=pump, args=(fd,), daemon=True).start()
