#!/usr/bin/env bash
# flowgate DNS hook: RFC 2136 dynamic update with nsupdate (Debian's bind9-dnsutils).
#
# Wire it with `flowgate evacuate|restore|autopilot --dns 'deploy/hooks/dns-nsupdate.sh'`.
# flowgate runs it with `sh -c` and sets:
#   FLOWGATE_REGION  the region just evacuated or restored
#   FLOWGATE_PHASE   evacuated | restored (anything else, e.g. before-evacuate: do nothing)
#
# Configuration, from the environment:
#   FLOWGATE_DNS_SERVER   primary (authoritative) server to query and update (default 127.0.0.1)
#   FLOWGATE_DNS_PORT     its port (default 53)
#   FLOWGATE_DNS_ZONE     the zone to update, e.g. example.test.             (required)
#   FLOWGATE_DNS_NAME     the global name, e.g. api.example.test.            (required)
#   FLOWGATE_DNS_TTL      TTL of records put back on restore (default 30)
#   FLOWGATE_DNS_KEY      TSIG key file for `nsupdate -k` (optional; e.g. from tsig-keygen)
#   FLOWGATE_DNS_RECORDS  file of `REGION A|AAAA ADDRESS` lines, `#` comments allowed: every
#                         region's records of the global name                (required)
#
# evacuated: deletes exactly FLOWGATE_REGION's records from the global name. Before sending,
#   it asks the server (dig) what the name has now and refuses if the deletion would leave
#   no A/AAAA record at all (never black-hole the name). The update carries that answer as
#   its prerequisite, so a concurrent change makes it fail instead of emptying the name.
# restored: adds FLOWGATE_REGION's records back with FLOWGATE_DNS_TTL.
# Both are idempotent: records already gone (or already there) succeed without an update.
# It prints one line saying what it changed.
#
# Exit status: 0 done (or nothing to do); 2 configuration error (the message names the
# variable); 3 refused, the name would be left empty; 4 the DNS query or the update failed.
set -euo pipefail

me=dns-nsupdate
die() { # status message...
  local rc=$1
  shift
  echo "$me: $*" >&2
  exit "$rc"
}
need_var() { # name what
  [ -n "${!1:-}" ] || die 2 "$1 is not set ($2)"
}
fqdn() { case "$1" in *.) printf '%s' "$1" ;; *) printf '%s.' "$1" ;; esac; }

# One spelling per address, so that the file's and dig's can be compared: lowercase, and
# IPv6 expanded to eight 4-digit groups.
norm() { # type address
  local a=${2,,}
  if [ "$1" = A ] || [[ $a == *.* ]]; then
    printf '%s' "$a"
    return
  fi
  local head=$a tail='' g n i
  local -a groups=() tgroups=() hex=()
  if [[ $a == *::* ]]; then
    head=${a%%::*}
    tail=${a#*::}
  fi
  IFS=: read -r -a groups <<<"$head"
  if [ -n "$tail" ]; then IFS=: read -r -a tgroups <<<"$tail"; fi
  if [[ $a == *::* ]]; then
    n=$((8 - ${#groups[@]} - ${#tgroups[@]}))
    for ((i = 0; i < n; i++)); do groups+=(0); done
    groups+=("${tgroups[@]}")
  fi
  for g in "${groups[@]}"; do hex+=("$(printf '%04x' "0x${g:-0}")"); done
  local IFS=:
  printf '%s' "${hex[*]}"
}

need_var FLOWGATE_PHASE "evacuated or restored; set by flowgate"
phase=$FLOWGATE_PHASE
case "$phase" in
  evacuated | restored) ;;
  *) exit 0 ;;
esac
need_var FLOWGATE_REGION "the region; set by flowgate"
need_var FLOWGATE_DNS_ZONE "the zone to update, e.g. example.test."
need_var FLOWGATE_DNS_NAME "the global name, e.g. api.example.test."
need_var FLOWGATE_DNS_RECORDS "file of 'REGION A|AAAA ADDRESS' lines"
region=$FLOWGATE_REGION
server=${FLOWGATE_DNS_SERVER:-127.0.0.1}
port=${FLOWGATE_DNS_PORT:-53}
ttl=${FLOWGATE_DNS_TTL:-30}
zone=$(fqdn "$FLOWGATE_DNS_ZONE")
name=$(fqdn "$FLOWGATE_DNS_NAME")
records=$FLOWGATE_DNS_RECORDS
key=${FLOWGATE_DNS_KEY:-}
[[ $port =~ ^[0-9]+$ ]] || die 2 "FLOWGATE_DNS_PORT is not a port: $port"
[[ $ttl =~ ^[0-9]+$ ]] || die 2 "FLOWGATE_DNS_TTL is not a number of seconds: $ttl"
[ -r "$records" ] || die 2 "FLOWGATE_DNS_RECORDS: cannot read $records"
[ -z "$key" ] || [ -r "$key" ] || die 2 "FLOWGATE_DNS_KEY: cannot read $key"
command -v nsupdate >/dev/null 2>&1 || die 2 "nsupdate not found (install bind9-dnsutils)"
command -v dig >/dev/null 2>&1 || die 2 "dig not found (install bind9-dnsutils)"

# This region's records, from the file.
mine=() # "TYPE ADDRESS"
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line=${line%%#*}
  read -r -a f <<<"$line" || true
  [ ${#f[@]} -eq 0 ] && continue
  [ ${#f[@]} -eq 3 ] || die 2 "FLOWGATE_DNS_RECORDS: $records:$lineno: expected 'REGION A|AAAA ADDRESS'"
  t=${f[1]^^}
  case "$t" in
    A) [[ ${f[2]} =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] ;;
    AAAA) [[ ${f[2]} =~ ^[0-9A-Fa-f:.]+$ && ${f[2]} == *:* ]] ;;
    *) false ;;
  esac || die 2 "FLOWGATE_DNS_RECORDS: $records:$lineno: not an A or AAAA record: ${f[1]} ${f[2]}"
  [ "${f[0]}" = "$region" ] && mine+=("$t ${f[2]}")
done <"$records"
[ ${#mine[@]} -gt 0 ] || die 2 "FLOWGATE_DNS_RECORDS: $records lists no record for FLOWGATE_REGION=$region"

# What the name has now, from the server itself.
current=() # "TYPE ADDRESS" as dig prints them
for t in A AAAA; do
  out=$(dig @"$server" -p "$port" +norecurse +time=3 +tries=2 +noall +answer "$name" "$t") ||
    die 4 "dig @$server -p $port $name $t failed: ${out//$'\n'/; }"
  while read -r owner _ttl _class rtype data _; do
    [ "${owner,,}" = "${name,,}" ] && [ "$rtype" = "$t" ] && current+=("$t $data")
  done <<<"$out"
done
has() { # "TYPE ADDRESS": is it in current?
  local c want
  want="${1%% *} $(norm "${1%% *}" "${1#* }")"
  for c in "${current[@]}"; do
    [ "${c%% *} $(norm "${c%% *}" "${c#* }")" = "$want" ] && return 0
  done
  return 1
}

change=()
if [ "$phase" = evacuated ]; then
  for r in "${mine[@]}"; do has "$r" && change+=("$r"); done
  left=$((${#current[@]} - ${#change[@]}))
  if [ ${#change[@]} -eq 0 ]; then
    if [ "$left" -eq 0 ]; then
      die 3 "refusing: $name has no A/AAAA record at all on $server (nothing of $region to remove)"
    fi
    echo "$me: $phase $region: $name already has none of its records (${mine[*]}); $left left, nothing sent"
    exit 0
  fi
  [ "$left" -gt 0 ] ||
    die 3 "refusing to remove $region's records (${change[*]}): $name would be left with no A/AAAA record"
else
  for r in "${mine[@]}"; do has "$r" || change+=("$r"); done
  if [ ${#change[@]} -eq 0 ]; then
    echo "$me: $phase $region: $name already has its records (${mine[*]}), nothing sent"
    exit 0
  fi
fi

# The update: the RRsets as seen above are its prerequisite (value-dependent, RFC 2136
# 2.4.2), then the change. A concurrent change to the name fails it rather than emptying it.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "server $server $port"
  echo "zone $zone"
  for t in A AAAA; do
    seen=0
    for c in "${current[@]}"; do
      [ "${c%% *}" = "$t" ] || continue
      echo "prereq yxrrset $name IN $c"
      seen=1
    done
    [ "$seen" = 1 ] || echo "prereq nxrrset $name IN $t"
  done
  for r in "${change[@]}"; do
    if [ "$phase" = evacuated ]; then
      echo "update delete $name IN $r"
    else
      echo "update add $name $ttl IN $r"
    fi
  done
  echo "send"
} >"$tmp"
args=(-v -t 10)
[ -n "$key" ] && args+=(-k "$key")
if ! out=$(nsupdate "${args[@]}" "$tmp" 2>&1); then
  die 4 "nsupdate to $server port $port failed (zone $zone, $phase $region): ${out//$'\n'/; }"
fi
if [ "$phase" = evacuated ]; then
  echo "$me: $phase $region: removed ${change[*]} from $name ($left record(s) left)"
else
  echo "$me: $phase $region: added ${change[*]} to $name with TTL $ttl"
fi
