#!/bin/sh
# The containers' program: counts once a second in this shell's memory and
# serves the count over HTTP on port ${PORT:-8080} (busybox httpd), so a
# restore that kept the shell shows a count that goes on from where it was,
# and one that restarted the container shows a count from 1 again.
port=${PORT:-8080}
# A container in a network namespace of its own sees its loopback down until
# someone brings it up: here where the container may (LXC), else its runtime's user.
ip link set lo up 2>/dev/null
mkdir -p /www
httpd -f -p "$port" -h /www &
i=0
while :; do
  i=$((i + 1))
  echo "$i" > /www/count.tmp && mv /www/count.tmp /www/count
  sleep 1
done
