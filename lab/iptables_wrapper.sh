#!/bin/sh
# A test double of /usr/sbin/iptables-wrapper as distroless-iptables ships it: the script that
# kubernetes-sigs/iptables-wrappers' v2 installer (iptables-wrapper-installer.sh) writes on an
# image without an alternatives system, where it also links iptables, iptables-save,
# iptables-restore and their ip6tables twins to this file. lab/rootfs.ts installs it there.
#
# Written from the upstream behaviour, step for step, because the lab must fail exactly as the
# image does:
#   1. kubelet (1.17+) leaves a chain in the mangle table of the backend it uses
#      (KUBE-IPTABLES-HINT, or KUBE-KUBELET-CANARY): look in nft first (cheap to dump one table),
#   2. then in the legacy dumps (whole dumps: "-t mangle" would make the legacy kernel create
#      the table),
#   3. else the backend holding more rules wins; a tie goes to nft.
#   4. Relink the six names to xtables-<mode>-multi and run the command again. When the relink
#      fails (a read-only root: readOnlyRootFilesystem: true), say so and run
#      xtables-<mode>-multi with the name the wrapper was called by as the subcommand. That
#      name is a full path (/usr/sbin/iptables-save), which xtables-multi does not strip, so
#      the call fails: "ERROR: No valid subcommand given."
#
# Only POSIX sh, grep, wc, rm and ln: the tools the image stages for this script.
set -eu

# Lab-only, not upstream: one line per call, so a test can prove the wrapper never ran. Only
# when the file already exists (the lab bind-mounts a writable directory at /run/lab); in the
# real image there is no such file and this is a no-op.
wrapper_log=/run/lab/wrapper.log
if [ -f "$wrapper_log" ] && [ -w "$wrapper_log" ]; then
    printf '%s\n' "$0 $*" >>"$wrapper_log"
fi

hint_chains='^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)'

# Both families' dumps of one backend; a backend that fails to dump counts as empty.
dump() {
    backend=$1
    shift
    {
        "iptables-${backend}-save" "$@" || true
        "ip6tables-${backend}-save" "$@" || true
    } 2>/dev/null
}

# "| wc -l" rather than "grep -c": grep exits 1 on no match, which would end the script (set -e).
if [ "$(dump nft -t mangle | grep -E "$hint_chains" | wc -l)" -ne 0 ]; then
    mode=nft
elif [ "$(dump legacy | grep -E "$hint_chains" | wc -l)" -ne 0 ]; then
    mode=legacy
else
    legacy_rules=$(dump legacy | grep '^-' | wc -l)
    nft_rules=$(dump nft | grep '^-' | wc -l)
    if [ "$legacy_rules" -gt "$nft_rules" ]; then
        mode=legacy
    else
        mode=nft
    fi
fi

sbin=/usr/sbin
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    rm -f "$sbin/$name"
    ln -s "$sbin/xtables-$mode-multi" "$sbin/$name"
done 2>/dev/null || relink_failed=1

if [ "${relink_failed:-0}" = 1 ]; then
    echo "Unable to redirect iptables binaries. (Are you running in an unprivileged pod?)" 1>&2
    exec "$sbin/xtables-$mode-multi" "$0" "$@"
fi

exec "$0" "$@"
