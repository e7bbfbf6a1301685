#!/bin/bash
# alternates --queues 1 and --queues 2 runs of the same bench net, ROUNDS rounds (ABBA order)
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
R=$1; OUT=$2; shift 2
cd /work/main
for r in $(seq $R); do
  ORDER="1 2"; if (( r % 2 == 0 )); then ORDER="2 1"; fi
  for q in $ORDER; do
    echo "## round $r queues $q $(date +%T)" >> $OUT
    flock /tmp/jvhost-build.lock ./jvhost bench net --queues $q --out /tmp/qpalt-out "$@" 2>&1 | grep -E " run [0-9]+ \(" | sed 's/(warmed.*backend [0-9]* pkts, //; s/mrg=1//; s/0.00 B.*//; s/copy .* ns\/line, //' >> $OUT
  done
done
