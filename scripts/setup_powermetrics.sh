#!/usr/bin/env bash
# setup_powermetrics.sh: let one user run /usr/bin/powermetrics as root
# without a password, so that `tracing-energy` can sample energy on macOS.
#
# powermetrics (macOS only) must run as root. tracing-energy starts it as
# `sudo -n /usr/bin/powermetrics <flags>`; `-n` means sudo must never prompt,
# so the user needs a NOPASSWD rule for that one command. This script
# installs such a rule as a sudoers drop-in file:
#
#     /etc/sudoers.d/powermetrics-<user>
#     <user> ALL=(root) NOPASSWD: /usr/bin/powermetrics
#
# The user is the one who invokes the script (via sudo: $SUDO_USER). A dot
# in the user name becomes "_" in the file name, because sudo skips
# sudoers.d files whose names contain a dot.
#
# No argument list is given after the command path, so the rule allows
# powermetrics with ANY arguments: the profiler needs to pass its own flags.
# SECURITY LIMIT: any process running as that user can then run powermetrics
# as root without a password, with any flags, including `-o FILE`/`-u FILE`
# (output file), which creates or overwrites FILE as root. Remove the rule
# (--remove) when you are not profiling.
#
# Usage:
#     scripts/setup_powermetrics.sh            install (or refresh) the rule
#     scripts/setup_powermetrics.sh --dry-run  print the rule and its path only
#     scripts/setup_powermetrics.sh --remove   delete the rule
#     scripts/setup_powermetrics.sh --help
#
# If not run as root, the script re-runs itself with sudo (asks for your
# password once). The rule is written to a temporary file, checked with
# `visudo -cf`, given mode 0440 (owner root:wheel on macOS, root:root
# elsewhere) and only then renamed into place, so a broken rule is never
# installed. Running it again with the rule already in place changes nothing.
#
# Environment (both exist for tests; leave them unset for normal use):
#     TRACING_ENERGY_SUDOERS_DIR       folder for the drop-in file
#                                      (default /etc/sudoers.d). When set and
#                                      writable, no root check / sudo re-run
#                                      and no final `sudo -l` check is done.
#     TRACING_ENERGY_POWERMETRICS_BIN  command path written into the rule
#                                      (default /usr/bin/powermetrics).
# (The profiler itself reads TRACING_ENERGY_POWERMETRICS to find the
# powermetrics executable; that variable does not affect this script.)
#
# Exit status: 0 success (including "nothing changed" / "nothing to remove"),
# 1 error (nothing installed), 2 bad usage.

set -euo pipefail

readonly DEFAULT_SUDOERS_DIR=/etc/sudoers.d
readonly DEFAULT_POWERMETRICS_BIN=/usr/bin/powermetrics

prog=$(basename -- "$0")

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$prog" "$*" >&2
}

usage() {
    cat <<EOF
Usage: $prog [--dry-run] [--remove] [--help]

Installs a sudoers rule that lets you run powermetrics as root without a
password, so that tracing-energy can measure energy on macOS:

    <user> ALL=(root) NOPASSWD: $DEFAULT_POWERMETRICS_BIN
    in $DEFAULT_SUDOERS_DIR/powermetrics-<user>

Options:
  --dry-run   print the rule and where it would go; write nothing
  --remove    delete the rule file
  -h, --help  show this help

Run it as yourself; it re-runs itself with sudo and asks for your password
once. Security note: with the rule in place, any program running as you can
run powermetrics as root, including its -o/-u options that write files as
root. Remove the rule with --remove when you are not profiling.

Environment (for tests): TRACING_ENERGY_SUDOERS_DIR (default
$DEFAULT_SUDOERS_DIR), TRACING_ENERGY_POWERMETRICS_BIN (default
$DEFAULT_POWERMETRICS_BIN).
EOF
}

# ---------------------------------------------------------------- arguments
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
            printf 'Run "%s --help" for usage.\n' "$prog" >&2
            exit 2
            ;;
    esac
done

# ---------------------------------------------------------------- settings
sudoers_dir=${TRACING_ENERGY_SUDOERS_DIR:-}
test_mode=0
if [[ -n "$sudoers_dir" ]]; then
    test_mode=1
else
    sudoers_dir=$DEFAULT_SUDOERS_DIR
fi
sudoers_dir=${sudoers_dir%/}
[[ -n "$sudoers_dir" ]] || sudoers_dir=/

pm_bin=${TRACING_ENERGY_POWERMETRICS_BIN:-$DEFAULT_POWERMETRICS_BIN}
# The path goes verbatim into a sudoers line: refuse anything that could
# change the meaning of that line (spaces, commas, colons, '#', '=', '\' ...).
if [[ ! "$pm_bin" =~ ^[A-Za-z0-9._/+-]+$ ]]; then
    die "powermetrics path '$pm_bin' contains characters not allowed in the rule (allowed: letters, digits, . _ / + -). Nothing changed."
fi

# The user the rule is for: the invoking user.
if [[ -n "${SUDO_USER:-}" ]]; then
    target_user=$SUDO_USER
elif [[ -n "${USER:-}" ]]; then
    target_user=$USER
else
    target_user=$(id -un)
fi

if [[ ! "$target_user" =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]]; then
    die "invalid user name '$target_user': only letters, digits, '.', '_' and '-' are allowed (not starting with '-'). Nothing changed."
fi
if [[ "$target_user" == root ]]; then
    die "refusing to install a rule for root: root can already run powermetrics without a password. Run this script as the user who will run tracing-energy (e.g. '$0' from your own account, not from a root shell); it will ask for sudo itself."
fi

rule_file_name="powermetrics-${target_user//./_}"
rule_path="$sudoers_dir/$rule_file_name"
rule_line="$target_user ALL=(root) NOPASSWD: $pm_bin"

rule_content() {
    cat <<EOF
# Installed by tracing-energy scripts/setup_powermetrics.sh.
# Lets $target_user run powermetrics as root without a password, for energy
# profiling. Any arguments are allowed, including -o/-u (write a file as root).
# Remove with: scripts/setup_powermetrics.sh --remove   (or: sudo rm $rule_path)
$rule_line
EOF
}

find_visudo() {
    local candidate
    if candidate=$(command -v visudo 2>/dev/null); then
        printf '%s\n' "$candidate"
        return 0
    fi
    for candidate in /usr/sbin/visudo /usr/local/sbin/visudo /sbin/visudo; do
        if [[ -x "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Prints the permission bits of a file in octal (e.g. 440), on macOS and Linux.
is_bsd_stat() {
    case "$(uname -s)" in
        Darwin | *BSD | DragonFly) return 0 ;;
        *) return 1 ;;
    esac
}

file_mode() {
    if is_bsd_stat; then stat -f '%Lp' -- "$1"; else stat -c '%a' -- "$1"; fi
}

file_owner_uid() {
    if is_bsd_stat; then stat -f '%u' -- "$1"; else stat -c '%u' -- "$1"; fi
}

root_group() {
    if [[ "$(uname -s)" == Darwin ]]; then
        printf 'wheel\n'
    else
        printf 'root\n'
    fi
}

# ---------------------------------------------------------------- dry run
if ((dry_run)); then
    if ((remove)); then
        if [[ -e "$rule_path" || -L "$rule_path" ]]; then
            printf 'Dry run: would remove %s\n' "$rule_path"
        else
            printf 'Dry run: %s is not installed; nothing to remove.\n' "$rule_path"
        fi
        exit 0
    fi
    printf 'Dry run: nothing is written.\n'
    printf 'Would install this rule for user %s:\n\n' "$target_user"
    printf '    %s\n\n' "$rule_line"
    printf 'into %s (mode 0440, owner root:%s), after checking it with visudo.\n' \
        "$rule_path" "$(root_group)"
    if visudo_bin=$(find_visudo); then
        # Validate from stdin, so that nothing is written even in a dry run.
        if visudo_out=$(rule_content | "$visudo_bin" -c -f - 2>&1); then
            printf 'visudo check: OK.\n'
        else
            printf '%s\n' "$visudo_out" >&2
            die "visudo rejects this rule (validation failed); a real run would not install it."
        fi
    else
        warn "visudo not found; the rule was not validated (a real run needs visudo)."
    fi
    exit 0
fi

# ---------------------------------------------------------------- privileges
if ((test_mode)) && [[ ! -d "$sudoers_dir" ]]; then
    die "sudoers folder $sudoers_dir (TRACING_ENERGY_SUDOERS_DIR) does not exist. Nothing changed."
fi

need_root=1
if ((test_mode)) && [[ -d "$sudoers_dir" && -w "$sudoers_dir" ]]; then
    need_root=0
fi

if ((need_root)) && [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        die "this needs root to write to $sudoers_dir, and sudo was not found. Run it as root with SUDO_USER set to your user name."
    fi
    printf '%s needs root to write to %s.\n' "$prog" "$sudoers_dir" >&2
    printf 'Re-running with sudo; you may be asked for your password once.\n' >&2
    self=${BASH_SOURCE[0]}
    env_args=()
    if ((test_mode)); then
        env_args+=("TRACING_ENERGY_SUDOERS_DIR=$sudoers_dir")
    fi
    if [[ -n "${TRACING_ENERGY_POWERMETRICS_BIN:-}" ]]; then
        env_args+=("TRACING_ENERGY_POWERMETRICS_BIN=$TRACING_ENERGY_POWERMETRICS_BIN")
    fi
    # sudo sets SUDO_USER to the real (invoking) user; env passes the
    # overrides through sudo's environment reset.
    exec sudo -- env "${env_args[@]+"${env_args[@]}"}" bash "$self" ${1+"$@"}
fi

if [[ ! -d "$sudoers_dir" ]]; then
    die "$sudoers_dir does not exist, so sudo on this machine does not read drop-in files from it. Add '#includedir $sudoers_dir' to /etc/sudoers with 'sudo visudo' and create the folder (mode 0755), or add the line '$rule_line' with 'sudo visudo' yourself. Nothing changed."
fi

# ---------------------------------------------------------------- remove
if ((remove)); then
    if [[ -e "$rule_path" || -L "$rule_path" ]]; then
        rm -f -- "$rule_path"
        printf 'Removed %s: %s can no longer run powermetrics without a password.\n' \
            "$rule_path" "$target_user"
    else
        printf '%s is not installed; nothing to remove.\n' "$rule_path"
    fi
    exit 0
fi

# ---------------------------------------------------------------- install
visudo_bin=$(find_visudo) ||
    die "visudo not found (looked in PATH, /usr/sbin, /usr/local/sbin, /sbin); it is needed to check the rule before installing it. On macOS it is /usr/sbin/visudo; on Debian/Ubuntu install the 'sudo' package. Nothing changed."

if ((!test_mode)); then
    if [[ "$(uname -s)" != Darwin ]]; then
        warn "this is not macOS; powermetrics only exists on macOS. Installing the rule anyway."
    fi
    if [[ ! -x "$pm_bin" ]]; then
        warn "$pm_bin was not found or is not executable; the rule will have no effect until it exists."
    fi
    if [[ -r /etc/sudoers ]] &&
        ! grep -Eq "^[[:space:]]*[#@]includedir[[:space:]]+(/private)?${DEFAULT_SUDOERS_DIR}/?[[:space:]]*$" /etc/sudoers; then
        warn "/etc/sudoers has no '#includedir $DEFAULT_SUDOERS_DIR' line, so sudo may ignore the rule; the check below will tell."
    fi
fi

tmp_file=""
backup_file=""
cleanup() {
    [[ -n "$tmp_file" ]] && rm -f -- "$tmp_file"
    [[ -n "$backup_file" ]] && rm -f -- "$backup_file"
    return 0
}
trap cleanup EXIT

# The temporary file lives in the target folder so that the final mv is an
# atomic rename; its name starts with '.' so sudo ignores it meanwhile.
tmp_file=$(mktemp "$sudoers_dir/.${rule_file_name}.XXXXXX") ||
    die "cannot create a temporary file in $sudoers_dir. Nothing changed."
rule_content >"$tmp_file"

if ! visudo_out=$("$visudo_bin" -c -f "$tmp_file" 2>&1); then
    printf '%s\n' "$visudo_out" >&2
    die "visudo validation failed for the rule '$rule_line': file not installed, nothing changed."
fi

chmod 0440 "$tmp_file"
is_root=0
if [[ "$(id -u)" -eq 0 ]]; then
    is_root=1
    chown "root:$(root_group)" "$tmp_file"
fi

# Idempotence: same content, mode 0440 (and owned by root when we are root).
if [[ -f "$rule_path" && ! -L "$rule_path" ]] &&
    cmp -s -- "$tmp_file" "$rule_path" &&
    [[ "$(file_mode "$rule_path")" == 440 ]] &&
    { ((!is_root)) || [[ "$(file_owner_uid "$rule_path")" == 0 ]]; }; then
    printf '%s is already installed and up to date; nothing changed.\n' "$rule_path"
    ((test_mode)) || printf 'Next step: run "tracing-energy doctor" as %s to check the whole setup.\n' "$target_user"
    exit 0
fi

replacing=0
if [[ -e "$rule_path" || -L "$rule_path" ]]; then
    replacing=1
    if ((!test_mode)); then
        # Keep the old file (dot in name: ignored by sudo) to roll back to.
        backup_file=$(mktemp "$sudoers_dir/.${rule_file_name}.old.XXXXXX")
        cp -p -- "$rule_path" "$backup_file"
    fi
fi

mv -f -- "$tmp_file" "$rule_path"
tmp_file=""

verb=Installed
((replacing)) && verb=Updated
if ((test_mode)); then
    printf '%s %s (test folder; no sudo check done):\n    %s\n' "$verb" "$rule_path" "$rule_line"
    exit 0
fi

# Check the whole sudo configuration with the new file in it; roll back if
# something is wrong, so sudo is never left broken.
if ! visudo_out=$("$visudo_bin" -c 2>&1); then
    printf '%s\n' "$visudo_out" >&2
    if [[ -n "$backup_file" ]]; then
        mv -f -- "$backup_file" "$rule_path"
        backup_file=""
        die "the sudo configuration does not pass 'visudo -c' with the new rule; the previous $rule_path was restored. Fix the errors above with 'sudo visudo' and run this again."
    fi
    rm -f -- "$rule_path"
    die "the sudo configuration does not pass 'visudo -c' with the new rule; $rule_path was removed again, nothing changed. Fix the errors above with 'sudo visudo' and run this again."
fi

printf '%s %s:\n    %s\n' "$verb" "$rule_path" "$rule_line"

# Check as the user, ignoring cached credentials (-k), that sudo now lets
# them run powermetrics without a password (-n).
if sudo -u "$target_user" -- sudo -k -n -l "$pm_bin" >/dev/null 2>&1; then
    printf 'Checked: %s can run %s as root without a password.\n' "$target_user" "$pm_bin"
else
    warn "the rule is installed, but 'sudo -n -l $pm_bin' as $target_user still fails."
    warn "check that /etc/sudoers contains '#includedir $DEFAULT_SUDOERS_DIR' (sudo visudo), and that no later rule overrides it."
    exit 1
fi

printf '\nNext step: run "tracing-energy doctor" as %s to check the whole setup.\n' "$target_user"
printf 'When you are done profiling, remove the rule with: %s --remove\n' "$0"
