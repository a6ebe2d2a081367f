#!/bin/sh
# postinst of openvair-server. The service is not enabled nor started by the installation: review
# /etc/openvair/server.toml, then `systemctl enable --now openvair-server`. An upgrade restarts a running
# service. Nothing is done where systemd is not running (a container, a chroot).
set -e
case "$1" in
configure)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		if [ -n "$2" ]; then
			systemctl try-restart openvair-server.service || true
		fi
	fi
	;;
esac
exit 0
