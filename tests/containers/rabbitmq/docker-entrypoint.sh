#!/bin/sh
# The broker in the Compose run (the msg service): Debian's rabbitmq-server behind the rabbitmq
# image's entrypoint contract, which the Compose file's own entrypoint uses as written
# (`RABBITMQ_DEFAULT_PASS="$(cat …)" exec docker-entrypoint.sh rabbitmq-server`): the default user
# and password from RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS, the plugins from
# /etc/rabbitmq/enabled_plugins. Every port stays on loopback: AMQP (5672), Erlang's distribution
# and epmd. Then the broker replaces this shell as the rabbitmq user, so that `podman stop`
# signals it. Any other command runs as given.
set -eu
if [ "${1:-}" != rabbitmq-server ]; then
    exec "$@"
fi
umask 027
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.1 = 127.0.0.1:5672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
log.console = true
log.console.level = warning
log.file = false
CONF
chgrp rabbitmq /etc/rabbitmq/rabbitmq.conf
unset RABBITMQ_DEFAULT_PASS
export RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' \
    RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' \
    HOME=/var/lib/rabbitmq
exec setpriv --reuid rabbitmq --regid rabbitmq --init-groups -- /usr/lib/rabbitmq/bin/rabbitmq-server
