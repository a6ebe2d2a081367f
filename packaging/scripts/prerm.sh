#!/bin/sh
# prerm of openvair-server: stop the service before its binary goes (an upgrade restarts it in postinst).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop openvair-server.service || true
fi
exit 0
