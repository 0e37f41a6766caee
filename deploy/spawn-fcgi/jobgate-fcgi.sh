#!/bin/sh
# jobgate-fcgi.sh PROGRAM [FLAG...] — runs one jobgate web program under spawn-fcgi, in the
# foreground (for systemd's jobgate@.service, runit, a terminal...):
#
#     jobgate-fcgi.sh status               # jobgate-status on /run/jobgate/status.sock
#     jobgate-fcgi.sh submit --threads 16  # FLAGs go to the program
#
# PROGRAM is submit, status, logs, cache or admin (or jobgate-submit ...). The socket is
# $JOBGATE_SOCKET_DIR/PROGRAM.sock, mode 0660: the names nginx/jobgate-upstreams.conf uses.
# spawn-fcgi then execs the program in this same process (-n), so a supervisor's SIGTERM
# reaches the program itself, which finishes its requests within --grace seconds and exits.
#
# Environment (besides REDIS_URL and the JOBGATE_* settings, which reach the program as they are):
#   JOBGATE_SOCKET_DIR    directory of the socket (/run/jobgate; created when missing)
#   JOBGATE_USER          started as root: the user the program runs as (www-data); spawn-fcgi
#                         binds the socket as root, then drops to this user
#   JOBGATE_GROUP         started as root: its group (the user's primary group)
#   JOBGATE_SOCKET_GROUP  started as root: the socket's group (JOBGATE_GROUP): the web server's
#                         group, when the program runs as a user of its own
#   JOBGATE_THREADS       --threads N (the program's default: 8; jobgate-status and -submit one per CPU, 2 to 8)
#   JOBGATE_GRACE         --grace S (5); a supervisor must wait longer than this on stop
#   JOBGATE_BINDIR        where the programs are (/usr/local/bin, as `make install` set it)
# Started as another user than root, the program runs as that user, and the socket is its.
set -eu

ME=jobgate-fcgi
BINDIR=${JOBGATE_BINDIR:-/usr/local/bin}
SOCKET_DIR=${JOBGATE_SOCKET_DIR:-/run/jobgate}

die() { printf '%s: %s\n' "$ME" "$*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $ME PROGRAM [FLAG...]   (PROGRAM: submit, status, logs, cache, admin)"
PROGRAM=${1#jobgate-}
shift
case "$PROGRAM" in
    ''|*[!a-z]*|worker) die "not a jobgate web program: $PROGRAM" ;;
esac

BIN="$BINDIR/jobgate-$PROGRAM"
[ -x "$BIN" ] || die "$BIN is not installed (set JOBGATE_BINDIR?)"
command -v spawn-fcgi >/dev/null 2>&1 || die "spawn-fcgi is not installed"

[ -d "$SOCKET_DIR" ] || mkdir -p "$SOCKET_DIR" || die "cannot create $SOCKET_DIR"
SOCKET="$SOCKET_DIR/$PROGRAM.sock"

# The arguments are built in "$@" (POSIX sh has no arrays): the settings above in front of the
# FLAGs given here (a later flag wins), then the program, then spawn-fcgi's own flags.
if [ -n "${JOBGATE_GRACE:-}" ]; then set -- --grace "$JOBGATE_GRACE" "$@"; fi
if [ -n "${JOBGATE_THREADS:-}" ]; then set -- --threads "$JOBGATE_THREADS" "$@"; fi
set -- -- "$BIN" "$@"
if [ "$(id -u)" -eq 0 ]; then
    if [ -n "${JOBGATE_SOCKET_GROUP:-}" ]; then set -- -G "$JOBGATE_SOCKET_GROUP" "$@"; fi
    if [ -n "${JOBGATE_GROUP:-}" ]; then set -- -g "$JOBGATE_GROUP" "$@"; fi
    set -- -u "${JOBGATE_USER:-www-data}" "$@"
else
    # spawn-fcgi applies -M only as root; otherwise the socket's mode comes from the umask
    umask 0117
    if [ -n "${JOBGATE_USER:-}" ] && [ "$JOBGATE_USER" != "$(id -un)" ]; then
        printf '%s: not root: JOBGATE_USER=%s is ignored, running as %s\n' \
            "$ME" "$JOBGATE_USER" "$(id -un)" >&2
    fi
fi

exec spawn-fcgi -n -s "$SOCKET" -M 0660 "$@"
