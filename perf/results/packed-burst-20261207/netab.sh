#!/bin/bash
# usage: netab.sh ROUNDS OUT "A B" bench-net-args...
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
R=$1; OUT=$2; VS=$3; shift 3
cd /work/main
for r in $(seq $R); do for v in $VS; do
  echo "## round $r build $v $(date +%T)" >> $OUT
  mkdir -p /tmp/netab-out
  flock /tmp/jvhost-build.lock java --enable-native-access=ALL-UNNAMED -Djvhost.home=/work/main -cp "/tmp/jar$v/jvhost-cli.jar:/tmp/jar$v/lib/*" io.jvhost.cli.Main bench net --out /tmp/netab-out "$@" 2>&1 | grep -E " run [0-9]+ \(" | sed 's/(warmed.*backend [0-9]* pkts, //' >> $OUT
done; VS=$(echo $VS | awk '{for(i=NF;i>0;i--) printf "%s ", $i}'); done
