#!/bin/bash
# usage: jmhab.sh ROUNDS OUT jmh-args...
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
R=$1; OUT=$2; shift 2
for r in $(seq $R); do for v in A B; do
  echo "## round $r build $v" >> $OUT
  flock /tmp/jvhost-build.lock taskset -c 1 java --enable-native-access=ALL-UNNAMED -Djvhost.home=/work/main -cp "/tmp/jar$v/jvhost-cli.jar:/tmp/jar$v/lib/*" io.jvhost.cli.Main bench jmh "$@" 2>&1 | grep -E "^(Mergeable|Loopback)" >> $OUT
done; done
