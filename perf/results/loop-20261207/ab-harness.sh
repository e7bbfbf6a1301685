#!/bin/bash
# usage: abv.sh ROUNDS "label=dir=javaopts" ... ; env DIRS RINGS BK SECS DPDK
R=$1; shift
DIRS=${DIRS:-loop}; RINGS=${RINGS:-packed}; BK=${BK:-jvhost-adaptive}; SECS=${SECS:-3}
export PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
out=/tmp/abv-$(date +%H%M%S).txt; echo $out
run() { local label=$1 dir=$2 opts=$3 bk=$4
  (cd /tmp/$dir && JAVA_TOOL_OPTIONS="$opts" ./jvhost bench net --dirs $DIRS --rings $RINGS --sizes 64 --mrg 1 --queues 1 --backends $bk --runs 1 --seconds $SECS --out /tmp/abres 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep ' run 1 ' | sed "s/^/$label /") >> $out; }
vs=("$@")
for r in $(seq $R); do
  echo "== round $r" >> $out
  if [ $((r % 2)) = 1 ]; then order=$(seq 0 $((${#vs[@]}-1))); else order=$(seq $((${#vs[@]}-1)) -1 0); fi
  for i in $order; do IFS='=' read -r label dir opts <<< "${vs[$i]}"; run "$label" "$dir" "$opts" $BK; done
  [ "${DPDK:-1}" = 1 ] && run dpdk A "" dpdk
done
python3 /tmp/abs.py $out
