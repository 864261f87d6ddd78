# scripts/lib/checkout.sh -- sourced by scripts/{kafka,cassandra,run-cluster,test}: what is
# per checkout (run directory, ports) and who owns a port. Needs REPO set to the checkout.
#
# Run directory: $CHATSVC_RUN_DIR, default $REPO/.run (gitignored), so two checkouts never
# share broker state, pid files or env files.
#
# Ports: each checkout gets a block of 20 ports at CHATSVC_PORT_BASE, by default derived
# from the checkout's path (20000 + 20 * (cksum(path) % 600), below Linux's ephemeral range
# at 32768). Every port also has its own variable; the layout:
#   +0 Kafka PLAINTEXT   +1 Kafka SSL (mTLS)   +2 Kafka CONTROLLER   +3 Kafka SASL_SSL
#   +4 Cassandra CQL     +5 Cassandra storage  +6 Cassandra JMX
#   +10/+11 run-cluster replica 1/2 HTTP       +12/+13 run-cluster replica 1/2 gRPC
#
# Ownership: a script that starts a service records, per port, which run dir owns it in
# $CHATSVC_PORT_CLAIMS (default /tmp/chatsvc-ports), so a taken port is reported with its
# owner ("the kafka of run dir /x (pid 12)") instead of being silently reused.

chatsvc_run_root() {
  echo "${CHATSVC_RUN_DIR:-$REPO/.run}"
}

chatsvc_port_base() {
  if [[ -n ${CHATSVC_PORT_BASE:-} ]]; then
    [[ $CHATSVC_PORT_BASE =~ ^[0-9]+$ ]] && ((CHATSVC_PORT_BASE + 19 < 65536)) || {
      echo "CHATSVC_PORT_BASE must be a port number below 65516, got '$CHATSVC_PORT_BASE'" >&2
      return 1
    }
    echo "$CHATSVC_PORT_BASE"
    return 0
  fi
  local sum
  sum=$(printf '%s' "$REPO" | cksum | cut -d' ' -f1)
  echo $((20000 + 20 * (sum % 600)))
}

chatsvc_claims_dir() {
  echo "${CHATSVC_PORT_CLAIMS:-/tmp/chatsvc-ports}"
}

# port_listener PORT -> "pid N (command)" of the process listening on 127.0.0.1:PORT, if known
port_listener() {
  local line pid
  line=$(ss -Htlnp 2>/dev/null | awk -v p=":$1" '$4 ~ p"$"' | head -n1) || true
  pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line" | head -n1)
  if [[ -n $pid ]]; then
    echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80 || echo '?'))"
  fi
}

# port_owner PORT -> who holds PORT, for an error message
port_owner() {
  local claim pid service run
  claim="$(chatsvc_claims_dir)/$1"
  if [[ -f $claim ]] && read -r pid service run <"$claim" && kill -0 "$pid" 2>/dev/null; then
    echo "the $service of run dir $run (pid $pid; CHATSVC_RUN_DIR=$run owns it)"
    return 0
  fi
  local who pid cmd
  who=$(port_listener "$1")
  pid=$(sed -n 's/^pid \([0-9]*\).*/\1/p' <<<"$who")
  if [[ -n $pid ]]; then
    # A service of these scripts without a record (e.g. started by an older version): its
    # command line still names its run dir.
    cmd=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || true
    run=$(sed -n 's|^\(/.*\)/kafka/server.properties$|\1|p' <<<"$cmd" | head -n1)
    [[ -n $run ]] && { echo "the Kafka broker of run dir $run (pid $pid; CHATSVC_RUN_DIR=$run owns it)"; return 0; }
    run=$(sed -n 's|^-Dchatsvc.cassandra.rundir=\(.*\)/cassandra$|\1|p' <<<"$cmd" | head -n1)
    [[ -n $run ]] && { echo "the Cassandra node of run dir $run (pid $pid; CHATSVC_RUN_DIR=$run owns it)"; return 0; }
  fi
  echo "${who:-another process} (no ownership record in $(chatsvc_claims_dir))"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# require_free_ports "VAR=PORT"... -> dies (through the caller's die) on the first taken port
require_free_ports() {
  local spec var port seen=" "
  for spec in "$@"; do
    var=${spec%%=*} port=${spec#*=}
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "$var must be a port number, got '$port'"
    [[ $seen == *" $port "* ]] && die "$var=$port is also used by another of this script's ports; set distinct ports"
    seen+="$port "
    if port_in_use "$port"; then
      die "port 127.0.0.1:$port ($var) is already in use by $(port_owner "$port"); stop that, or set $var (or CHATSVC_PORT_BASE) to a free port"
    fi
  done
}

# claim_ports SERVICE PID RUN_DIR PORT... -> record that RUN_DIR's SERVICE (PID) owns the ports
claim_ports() {
  local service=$1 pid=$2 run=$3 dir port
  shift 3
  dir=$(chatsvc_claims_dir)
  mkdir -p "$dir" 2>/dev/null && chmod 1777 "$dir" 2>/dev/null || true
  for port in "$@"; do
    echo "$pid $service $run" >"$dir/$port.tmp.$$" && mv -f "$dir/$port.tmp.$$" "$dir/$port" || true
  done
}

# release_ports PID PORT... -> drop the claims PID made
release_ports() {
  local pid=$1 dir port owner
  shift
  dir=$(chatsvc_claims_dir)
  for port in "$@"; do
    owner=$(cut -d' ' -f1 "$dir/$port" 2>/dev/null) || continue
    [[ $owner == "$pid" ]] && rm -f "$dir/$port"
  done
  return 0
}

# start_services SERVICE... -> `scripts/SERVICE start` for each, in this run dir; the ones
# that were not running before are appended to CHATSVC_STARTED_SERVICES (only those are
# ours to stop). Returns non-zero at the first service that fails to start.
CHATSVC_STARTED_SERVICES=()
start_services() {
  local service running
  for service in "$@"; do
    running=1
    "$REPO/scripts/$service" status >/dev/null 2>&1 || running=0
    ((running)) || CHATSVC_STARTED_SERVICES+=("$service")
    "$REPO/scripts/$service" start || return 1
  done
}

# stop_started_services -> stop exactly what start_services started (last started first)
stop_started_services() {
  local i
  for ((i = ${#CHATSVC_STARTED_SERVICES[@]} - 1; i >= 0; i--)); do
    "$REPO/scripts/${CHATSVC_STARTED_SERVICES[$i]}" stop || true
  done
}
