#!/usr/bin/env bash
# setup_rapl.sh: let the members of the group `powercap` read the RAPL energy
# counters (/sys/class/powercap/intel-rapl:*/energy_uj), so that
# `tracing-energy --source rapl` works without root on Linux.
#
# Since Linux 5.10 energy_uj is readable by root only (mode 0400): the
# counter's fine resolution lets an unprivileged process infer what other
# code computes (CVE-2020-8694, "Platypus"). This script gives read access
# back to one group, and adds you to it:
#
#   1. creates the group `powercap` (a system group) if it does not exist,
#      and adds the invoking user ($SUDO_USER) to it;
#   2. installs a udev rule, applied whenever a RAPL zone appears (at boot,
#      and when the intel_rapl_msr driver is loaded again):
#          /etc/udev/rules.d/99-tracing-energy-rapl.rules
#   3. installs a systemd-tmpfiles entry, a second pass at boot:
#          /etc/tmpfiles.d/tracing-energy-rapl.conf
#   4. applies it now: every intel-rapl:*/energy_uj under /sys/class/powercap
#      gets group `powercap` and mode g+r (0440).
#
# The new group membership counts from your next login (or `newgrp powercap`).
#
# SECURITY: every member of the group can read the energy counters again,
# which is what the kernel's root-only rule prevents: a process of such a
# user can use them as a side channel (Platypus) to learn about secrets that
# other processes or SGX enclaves compute. Use it on machines you control,
# and remove it (--remove) when you are not profiling.
#
# Usage:
#     sudo scripts/setup_rapl.sh             install (running it again changes nothing)
#     scripts/setup_rapl.sh --dry-run        print what it would do; change nothing
#     sudo scripts/setup_rapl.sh --remove    undo everything it installed
#     scripts/setup_rapl.sh --help
#
# Environment (for tests; leave them unset for normal use):
#     TRACING_ENERGY_UDEV_DIR      folder for the udev rule (/etc/udev/rules.d);
#                                  when set, udev is not reloaded
#     TRACING_ENERGY_TMPFILES_DIR  folder for the tmpfiles entry (/etc/tmpfiles.d)
#     TRACING_ENERGY_POWERCAP      the powercap tree (/sys/class/powercap)
#     TRACING_ENERGY_RAPL_GROUP    the group (powercap)
#     TRACING_ENERGY_SKIP_GROUP=1  do not create/delete the group or change
#                                  its members (the group must exist)
#
# Exit status: 0 success (including "nothing changed"), 1 error, 2 bad usage.

set -euo pipefail

prog=$(basename -- "$0")

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$prog" "$*" >&2
}

udev_dir=${TRACING_ENERGY_UDEV_DIR:-/etc/udev/rules.d}
tmpfiles_dir=${TRACING_ENERGY_TMPFILES_DIR:-/etc/tmpfiles.d}
powercap=${TRACING_ENERGY_POWERCAP:-/sys/class/powercap}
group=${TRACING_ENERGY_RAPL_GROUP:-powercap}
skip_group=${TRACING_ENERGY_SKIP_GROUP:-0}
udev_dir=${udev_dir%/}
tmpfiles_dir=${tmpfiles_dir%/}
powercap=${powercap%/}

udev_file="$udev_dir/99-tracing-energy-rapl.rules"
tmpfiles_file="$tmpfiles_dir/tracing-energy-rapl.conf"
# Marks a group this script created, so that --remove deletes only that one.
readonly CREATED_MARK="# created-group:"

usage() {
    cat <<EOF
Usage: $prog [--dry-run] [--remove] [--help]

Lets the group '$group' read the RAPL energy counters (energy_uj, root-only
since Linux 5.10, CVE-2020-8694 'Platypus') and adds you to the group, so
that tracing-energy can read RAPL without root:

  - creates the group '$group' and adds \$SUDO_USER to it
  - installs $udev_file
  - installs $tmpfiles_file
  - applies it now to $powercap/intel-rapl:*/energy_uj

Options:
  --dry-run   print what it would do; change nothing (no root needed)
  --remove    undo everything it installed
  -h, --help  show this help

Run it with sudo. Log in again afterwards for the group to count.
Security note: every member of '$group' can then read the energy counters,
a side channel (Platypus) on what other processes compute. Remove it with
--remove when you are not profiling.
EOF
}

dry_run=0
remove=0
for arg in ${1+"$@"}; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --remove) remove=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf '%s: error: unknown argument: %s\n' "$prog" "$arg" >&2
            usage >&2
            exit 2
            ;;
    esac
done

if [[ ! "$group" =~ ^[a-z_][a-z0-9_-]*$ ]]; then
    die "invalid group name '$group' (TRACING_ENERGY_RAPL_GROUP): lower-case letters, digits, '_' and '-' only. Nothing changed."
fi

# The user to add to the group: the one who ran sudo.
target_user=${SUDO_USER:-}
if [[ -n "$target_user" && ! "$target_user" =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]]; then
    die "invalid user name '$target_user' in SUDO_USER. Nothing changed."
fi
[[ "$target_user" == root ]] && target_user=""

if ((!dry_run)) && [[ "$(id -u)" -ne 0 ]]; then
    die "this needs root (it writes to $udev_dir and $tmpfiles_dir and changes files under $powercap). Fix: run 'sudo $0${1+ $*}', or '$0 --dry-run' to see what it would do."
fi

do_it() {
    # Runs a command, or prints it in a dry run.
    if ((dry_run)); then
        printf 'would run: %s\n' "$*"
    else
        "$@"
    fi
}

say() {
    if ((dry_run)); then printf 'would: %s\n' "$*"; else printf '%s\n' "$*"; fi
}

changed=0

# The energy_uj files of the RAPL zones present now (flat entries cover sub-zones).
energy_files() {
    local f
    shopt -s nullglob
    for f in "$powercap"/intel-rapl:*/energy_uj; do
        printf '%s\n' "$f"
    done
    shopt -u nullglob
}

group_exists() { getent group "$group" >/dev/null 2>&1; }

user_in_group() {
    id -nG "$target_user" 2>/dev/null | tr ' ' '\n' | grep -qx -- "$group"
}

created_group_mark() {
    # True when the installed rule says this script created the group.
    [[ -f "$udev_file" ]] && grep -qx -- "$CREATED_MARK $group" "$udev_file"
}

udev_content() {
    cat <<EOF
# Installed by tracing-energy scripts/setup_rapl.sh: lets the group $group read
# the RAPL energy counters (root-only since Linux 5.10, CVE-2020-8694).
# Security: members can use them as a side channel on other processes.
# Remove with: sudo scripts/setup_rapl.sh --remove
EOF
    if ((created)); then printf '%s %s\n' "$CREATED_MARK" "$group"; fi
    cat <<EOF
SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", ACTION=="add", RUN+="/bin/chgrp $group /sys%p/energy_uj", RUN+="/bin/chmod g+r /sys%p/energy_uj"
EOF
}

tmpfiles_content() {
    cat <<EOF
# Installed by tracing-energy scripts/setup_rapl.sh (see the udev rule
# 99-tracing-energy-rapl.rules): at boot, the group $group may read energy_uj.
# Remove with: sudo scripts/setup_rapl.sh --remove
z $powercap/intel-rapl:*/energy_uj 0440 root $group -
EOF
}

# Writes $2 (the content on stdin) to $1 with mode 0644 unless it is already so.
install_file() {
    local dest=$1 tmp
    local content
    content=$(cat)
    if [[ -f "$dest" && ! -L "$dest" ]] && [[ "$(cat -- "$dest")" == "$content" ]] &&
        [[ "$(stat -c '%a' -- "$dest")" == 644 ]]; then
        printf '%s is already installed; unchanged.\n' "$dest"
        return 0
    fi
    if ((dry_run)); then
        printf 'would write %s (mode 0644):\n' "$dest"
        printf '%s\n' "$content" | sed 's/^/    /'
        return 0
    fi
    [[ -d "$(dirname -- "$dest")" ]] || mkdir -p -- "$(dirname -- "$dest")"
    tmp=$(mktemp "$(dirname -- "$dest")/.tracing-energy-rapl.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod 0644 "$tmp"
    mv -f -- "$tmp" "$dest"
    printf 'Installed %s\n' "$dest"
    changed=1
}

remove_file() {
    if [[ -e "$1" || -L "$1" ]]; then
        do_it rm -f -- "$1"
        ((dry_run)) || printf 'Removed %s\n' "$1"
        changed=1
    fi
}

# ------------------------------------------------------------------ remove
if ((remove)); then
    delete_group=0
    if created_group_mark; then delete_group=1; fi
    remove_file "$udev_file"
    remove_file "$tmpfiles_file"
    # Back to the kernel's default: root:root, mode 0400.
    while IFS= read -r f; do
        if [[ "$(stat -L -c '%G' -- "$f")" == "$group" ]]; then
            do_it chgrp root -- "$f"
            do_it chmod g-r -- "$f"
            ((dry_run)) || printf 'Restored %s to root only\n' "$f"
            changed=1
        fi
    done < <(energy_files)
    if [[ "$skip_group" == 1 ]]; then
        printf 'Group changes skipped (TRACING_ENERGY_SKIP_GROUP=1).\n'
    elif group_exists; then
        if [[ -n "$target_user" ]] && user_in_group; then
            if ((dry_run)); then
                printf 'would run: gpasswd -d %s %s\n' "$target_user" "$group"
            else
                gpasswd -d "$target_user" "$group" >/dev/null
            fi
            say "removed $target_user from the group $group"
            changed=1
        fi
        # Members other than the invoking user (who is removed above).
        members=$(getent group "$group" | cut -d: -f4 | tr ',' '\n' |
            { grep -vx -- "${target_user:-}" || true; } | paste -sd, -)
        if ((delete_group)) && [[ -z "$members" ]]; then
            do_it groupdel "$group"
            say "deleted the group $group (this script had created it)"
            changed=1
        elif ((delete_group)); then
            warn "the group $group still has members ($members); it is kept."
        fi
    fi
    if ((changed == 0)); then
        printf 'Nothing installed; nothing to remove.\n'
    elif ((!dry_run)) && [[ -z "${TRACING_ENERGY_UDEV_DIR:-}" ]] && command -v udevadm >/dev/null; then
        udevadm control --reload || warn "udevadm control --reload failed"
    fi
    exit 0
fi

# ------------------------------------------------------------------ install
((dry_run)) && printf 'Dry run: nothing is changed.\n'

created=0
created_group_mark && created=1
if [[ "$skip_group" == 1 ]]; then
    printf 'Group changes skipped (TRACING_ENERGY_SKIP_GROUP=1).\n'
    group_exists || ((dry_run)) ||
        die "the group $group does not exist, and TRACING_ENERGY_SKIP_GROUP=1 says not to create it. Nothing changed."
else
    if ! group_exists; then
        do_it groupadd --system "$group"
        say "created the group $group"
        created=1
        changed=1
    fi
    if [[ -z "$target_user" ]]; then
        warn "no invoking user (SUDO_USER is unset or root): nobody was added to $group. Add users with: usermod -aG $group NAME"
    elif ! group_exists || ! user_in_group; then
        do_it usermod -aG "$group" "$target_user"
        say "added $target_user to the group $group (counts from the next login, or run 'newgrp $group')"
        changed=1
    fi
fi

before=$changed
udev_content | install_file "$udev_file"
tmpfiles_content | install_file "$tmpfiles_file"
if ((!dry_run && changed > before)) && [[ -z "${TRACING_ENERGY_UDEV_DIR:-}" ]]; then
    if command -v udevadm >/dev/null; then
        udevadm control --reload || warn "udevadm control --reload failed; the rule counts from the next boot"
    else
        warn "udevadm not found; the rule counts from the next boot"
    fi
fi

files=$(energy_files)
if [[ -z "$files" ]]; then
    warn "no RAPL zones under $powercap now (not Linux, a VM, or the intel_rapl_msr driver not loaded); the rule applies when they appear."
fi
while IFS= read -r f; do
    [[ -n "$f" ]] || continue
    if [[ "$(stat -L -c '%G' -- "$f")" != "$group" ]]; then
        do_it chgrp "$group" -- "$f"
        changed=1
    fi
    mode=$(stat -L -c '%a' -- "$f")
    if (((8#$mode & 8#040) == 0)); then
        do_it chmod g+r -- "$f"
        changed=1
    fi
    ((dry_run)) || printf '%s: group %s, mode %s\n' "$f" "$(stat -L -c '%G' -- "$f")" "$(stat -L -c '%a' -- "$f")"
done <<<"$files"

if ((dry_run)); then
    exit 0
fi
if ((changed == 0)); then
    printf 'Already set up; nothing changed.\n'
else
    printf '\nDone. Log in again (or run "newgrp %s"), then check with: tracing-energy doctor\n' "$group"
    printf 'Remove it all with: sudo %s --remove\n' "$0"
fi
