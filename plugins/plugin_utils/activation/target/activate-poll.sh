# shellcheck shell=sh
# Waits up to WAIT seconds for run RUN to end (a state in TERMINAL; or, with
# STOP_AWAITING=1, to await its confirmation), woken by the runner's every
# new state (its waiter file holds this session's pid), then one look: its status,
# whether its runner lives, its log's last LOG_LINES lines. Folding the wait
# into the same session saves the controller a round trip per look.
RD=$D/runs/$RUN
run_state() {  # st: the run's state (read by the shell: no process five times a second)
  st=
  [ -f "$RD/status" ] || return 0
  while IFS= read -r line; do
    case $line in state=*) st=${line#state=} ;; esac
  done <"$RD/status"
}
# the runner wakes this session at each state it writes (lib.sh's doze)
doze_start
{ echo $$ >"$RD/waiter"; } 2>/dev/null
while [ "$NAPPED" -lt $((WAIT * 20)) ]; do
  run_state
  case " $TERMINAL " in *" $st "*) break ;; esac
  [ "$STOP_AWAITING" = 1 ] && [ "$st" = awaiting_confirmation ] && break
  doze
done
doze_end
waiting=; read -r waiting 2>/dev/null <"$RD/waiter" || :
[ "$waiting" != $$ ] || : 2>/dev/null >"$RD/waiter"
# the status (key=value lines the runner writes, each value on one line) as
# values, then whether the runner lives: every value before the log, which
# is the activation's own output and never read as one
if [ -f "$RD/status" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in [a-z]*=*) emit "${line%%=*}" "${line#*=}" ;; esac
  done <"$RD/status"
fi
pid=; read -r pid 2>/dev/null <"$RD/pid" || :
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then emit alive "1"
else emit alive "0"; fi
log_section
tail -n "$LOG_LINES" "$RD/log" 2>/dev/null
