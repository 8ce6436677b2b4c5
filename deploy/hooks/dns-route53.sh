#!/usr/bin/env bash
# flowgate DNS hook, example for Amazon Route 53 (not tested here: needs AWS). Wire it with
# `flowgate evacuate|restore|autopilot --dns 'deploy/hooks/dns-route53.sh'`; flowgate sets
# FLOWGATE_REGION and FLOWGATE_PHASE (evacuated | restored; anything else: do nothing).
#
# The global name is a set of weighted (or multivalue answer) record sets, one per region
# and type, each with SetIdentifier = the region's name. On evacuated it DELETEs the
# region's record sets, on restored it UPSERTs them. Configuration, from the environment:
#   FLOWGATE_R53_ZONE_ID  hosted zone id, e.g. Z0123456789ABCDEFGHIJ              (required)
#   FLOWGATE_DNS_NAME     the global name, fully qualified, e.g. api.example.com.  (required)
#   FLOWGATE_DNS_TTL      TTL (default 30)
#   FLOWGATE_DNS_RECORDS  file of `REGION A|AAAA ADDRESS` lines, `#` comments      (required)
#   FLOWGATE_R53_ROUTING  weighted (default; Weight = FLOWGATE_R53_WEIGHT, default 100) or
#                         multivalue
# Credentials and the AWS region come from the usual AWS CLI configuration.
#
# A DELETE must match the record set exactly (TTL, weight, values): the file and the
# variables must say what Route 53 holds. Before deleting it lists the name's record sets
# and refuses (exit 3) if no other region would keep one (never black-hole the name).
# Deleting a set that is already gone is treated as done, so re-running is harmless.
set -euo pipefail

case "${FLOWGATE_PHASE:?FLOWGATE_PHASE is not set}" in
  evacuated) action=DELETE ;;
  restored) action=UPSERT ;;
  *) exit 0 ;;
esac
region=${FLOWGATE_REGION:?FLOWGATE_REGION is not set}
zone_id=${FLOWGATE_R53_ZONE_ID:?FLOWGATE_R53_ZONE_ID is not set (the hosted zone id)}
name=${FLOWGATE_DNS_NAME:?FLOWGATE_DNS_NAME is not set (the global name)}
name=${name%.}.
records=${FLOWGATE_DNS_RECORDS:?FLOWGATE_DNS_RECORDS is not set}
ttl=${FLOWGATE_DNS_TTL:-30}
case "${FLOWGATE_R53_ROUTING:-weighted}" in
  weighted) policy="\"Weight\": ${FLOWGATE_R53_WEIGHT:-100}," ;;
  multivalue) policy='"MultiValueAnswer": true,' ;;
  *) echo "dns-route53: FLOWGATE_R53_ROUTING must be weighted or multivalue" >&2; exit 2 ;;
esac

if [ "$action" = DELETE ]; then
  others=$(aws route53 list-resource-record-sets --hosted-zone-id "$zone_id" --output text \
    --query "length(ResourceRecordSets[?Name=='$name' && (Type=='A' || Type=='AAAA') && SetIdentifier!='$region'])")
  if [ "${others:-0}" -eq 0 ]; then
    echo "dns-route53: refusing to delete $region's records: $name would have no A/AAAA record set left" >&2
    exit 3
  fi
fi

# One change batch per record type (a record set holds one type), so that a set already
# gone does not stop the other one.
done_types=()
for type in A AAAA; do
  values=$(awk -v r="$region" -v t="$type" '{ sub(/#.*/, "") }
    $1 == r && toupper($2) == t { printf "%s{\"Value\": \"%s\"}", (n++ ? ", " : ""), $3 }' "$records")
  [ -n "$values" ] || continue
  batch="{\"Comment\": \"flowgate $FLOWGATE_PHASE $region\", \"Changes\": [{\"Action\": \"$action\",
    \"ResourceRecordSet\": {\"Name\": \"$name\", \"Type\": \"$type\", \"SetIdentifier\": \"$region\",
    $policy \"TTL\": $ttl, \"ResourceRecords\": [$values]}}]}"
  if id=$(aws route53 change-resource-record-sets --hosted-zone-id "$zone_id" \
    --change-batch "$batch" --query ChangeInfo.Id --output text 2>&1); then
    aws route53 wait resource-record-sets-changed --id "$id"
    done_types+=("$type")
  elif [ "$action" = DELETE ] && [[ $id == *"but it was not found"* ]]; then
    done_types+=("$type (already gone)")
  else
    echo "dns-route53: $action $name $type ($region) failed: $id" >&2
    exit 4
  fi
done
if [ ${#done_types[@]} -eq 0 ]; then
  echo "dns-route53: $records lists no record for FLOWGATE_REGION=$region" >&2
  exit 2
fi
echo "dns-route53: $FLOWGATE_PHASE $region: $action of $name ${done_types[*]} (SetIdentifier $region) done"
