#!/bin/bash
# usage: netvar.sh ROUNDS OUT JAR "name=opts;name=opts" bench-net-args...
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
R=$1; OUT=$2; JAR=$3; VARS=$4; shift 4
cd /work/main
IFS=';' read -ra VS <<< "$VARS"
for r in $(seq $R); do
  ORDER=("${VS[@]}"); if (( r % 2 == 0 )); then ORDER=(); for ((i=${#VS[@]}-1;i>=0;i--)); do ORDER+=("${VS[$i]}"); done; fi
  for v in "${ORDER[@]}"; do
  name=${v%%=*}; opts=${v#*=}
  echo "## round $r variant $name $(date +%T)" >> $OUT
  mkdir -p /tmp/netab-out
  flock /tmp/jvhost-build.lock java $opts --enable-native-access=ALL-UNNAMED -Djvhost.home=/work/main -cp "/tmp/jar$JAR/jvhost-cli.jar:/tmp/jar$JAR/lib/*" io.jvhost.cli.Main bench net --out /tmp/netab-out "$@" 2>&1 | grep -E " run [0-9]+ \(" | sed 's/(warmed.*backend [0-9]* pkts, //; s/mrg=1//; s/jvhost-busy//; s/0.00 B.*//; s/copy .* ns\/line, //' >> $OUT
done; done
