#!/usr/bin/env bash
# Test harness only: the scripts pass one common argument list and override some of its keys
# after it. madtrain itself refuses a key given twice (config_errors checks that), so this
# wrapper keeps the last key=value of each key and runs $MADTRAIN_BIN with the rest unchanged.
set -u
args=("$@")
declare -A last
for i in "${!args[@]}"; do
  a=${args[$i]}
  [[ $a == -* || $a != *=* ]] || last[${a%%=*}]=$i
done
kept=()
for i in "${!args[@]}"; do
  a=${args[$i]}
  if [[ $a != -* && $a == *=* && ${last[${a%%=*}]} != "$i" ]]; then continue; fi
  kept+=("$a")
done
exec "$MADTRAIN_BIN" "${kept[@]}"
