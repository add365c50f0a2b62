#!/bin/sh
# The session of crest's VNC scenario, after CRIU's wiki page "VNC" (its
# vnc_server.sh): a VNC server, a window manager and X clients, all children
# of this shell, which crest checkpoints as one tree. Started by
# `crest run --ns pid,ipc` (the wiki's newns: new PID and IPC namespaces,
# a new session, stdio to a log), so that the X server and its clients share
# a SysV IPC namespace of their own (MIT-SHM) and nothing outside holds
# their PIDs.
#
#   vnc-session.sh N PORT DIR X11SHM [xterm]
#
# N: the X display (:N), PORT: the VNC (RFB) TCP port, DIR: where logs and
# the clients' files go, X11SHM: the x11-shm workload (an X client drawing
# through MIT-SHM); "xterm": an xterm with a shell too.
set -u
n=$1 port=$2 dir=$3 x11shm=$4 term=${5:-}

Xvnc ":$n" -geometry 800x600 -depth 24 -desktop crest-vnc -SecurityTypes None \
	-rfbport "$port" -AlwaysShared -nolisten tcp >"$dir/Xvnc.log" 2>&1 &

# Clients connect once the server's socket is there (the wiki sleeps 3 s).
i=0
while [ ! -S "/tmp/.X11-unix/X$n" ]; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then
		echo "Xvnc :$n did not come up" >&2
		exit 1
	fi
	sleep 0.1
done

export DISPLAY=":$n"
icewm >"$dir/icewm.log" 2>&1 &
"$x11shm" "$dir/x11-shm.status" "$dir" >"$dir/x11-shm.log" 2>&1 &
if [ "$term" = xterm ]; then
	# The shell runs in the xterm's terminal (a pty), as its session leader,
	# in DIR (this script's working directory).
	xterm -title crest-xterm -geometry 72x12+240+300 -e /bin/sh >"$dir/xterm.log" 2>&1 &
fi
wait
