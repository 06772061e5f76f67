#!/bin/sh
# Stands in for ssh between the "hosts" of tests/integration/test_multihost.py, each a network
# namespace of this machine: Open MPI's launcher agent there (--mca plm_rsh_agent), and how the
# test starts mpirun itself. Called like ssh, `netns_launch.sh HOST COMMAND...`: HOST is looked
# up in FRACSWEEP_NETNS_HOSTS ("ADDRESS=NAMESPACE ADDRESS=NAMESPACE"), and COMMAND runs in that
# namespace through sh, as ssh's remote shell would run it, with the namespace's name as its
# host name (a UTS namespace of its own), so each host has its own name as a real one would.
set -eu
host=$1
shift
for entry in $FRACSWEEP_NETNS_HOSTS; do
  if [ "${entry%%=*}" = "$host" ]; then
    namespace=${entry#*=}
    exec ip netns exec "$namespace" unshare --uts /bin/sh -c \
      'hostname "$1" && exec /bin/sh -c "$2"' netns_launch.sh "$namespace" "$*"
  fi
done
echo "netns_launch.sh: host $host is not in FRACSWEEP_NETNS_HOSTS ($FRACSWEEP_NETNS_HOSTS)" >&2
exit 255
