#!/bin/sh
# make-criu-dir.sh DIR CRIU LOGDIR: writes DIR/criu, which the container
# runtimes find on PATH (or are given: runc --criu DIR/criu) and which runs
# CRIU (crest's bin/crest, or a real criu) with the runtime's arguments,
# unchanged, after appending them to LOGDIR/calls.log. `criu swrk FD` (runc
# and podman through go-criu, LXC's checks) also logs its session to
# LOGDIR/swrk-PID.log at -v4, where crest writes each RPC request it gets.
set -eu
usage='usage: make-criu-dir.sh DIR CRIU LOGDIR'
dir=${1:?$usage}
criu=$(readlink -f "${2:?$usage}")
[ -x "$criu" ] || { echo "make-criu-dir.sh: $2 is not an executable" >&2; exit 1; }
mkdir -p "$dir" "${3:?$usage}"
logs=$(readlink -f "$3")
cat > "$dir/criu" <<WRAP
#!/bin/sh
echo "\$\$ \$(date -u +%T) \$*" >> '$logs/calls.log'
if [ "\${1-}" = swrk ]; then exec '$criu' "\$@" -v4 --log-file '$logs/swrk-'\$\$'.log'; fi
exec '$criu' "\$@"
WRAP
chmod 755 "$dir/criu"
