#!/bin/sh
# postrm of openvair-server. /var/lib/openvair (database, tokens, key, and the default storage's disk
# images) is never removed, not even on purge: delete it by hand once its VMs and volumes are not needed.
set -e
case "$1" in
purge)
	rm -f /etc/systemd/system/multi-user.target.wants/openvair-server.service
	;;
esac
case "$1" in
remove|purge)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
exit 0
