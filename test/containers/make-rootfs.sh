#!/bin/sh
# make-rootfs.sh DIR: a busybox-static root file system in DIR, from the
# Debian package's /bin/busybox (nothing downloaded), with the container's
# program /counter.sh. Run again, it refreshes DIR's busybox and program.
set -eu
dir=${1:?usage: make-rootfs.sh DIR}
here=$(dirname "$(readlink -f "$0")")
bb=/bin/busybox
[ -x "$bb" ] && "$bb" --list >/dev/null 2>&1 || { echo "make-rootfs.sh: $bb is missing: apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin etc proc sys dev tmp www root run var/log
cp -f "$bb" bin/busybox
for applet in $(bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd
echo 'root:x:0:' > etc/group
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> etc/passwd
echo '127.0.0.1 localhost' > etc/hosts
cp -f "$here/counter.sh" counter.sh
chmod 755 counter.sh
