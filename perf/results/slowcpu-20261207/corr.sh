#!/bin/bash
export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
cd /work/main
for i in $(seq 1 12); do for c in 0 1; do
  p1=$(taskset -c $c /tmp/probe 256); s1=$(taskset -c $c /tmp/spd)
  sc=$(taskset -c $c perf/jmh LoopbackBench -p layout=packed -f 1 -wi 3 -w 1s -i 2 -r 1s 2>&1 | grep -E "^Iteration   2" | sed -e 's/Iteration   2: //' -e 's/ ns\/op//' | tr -d ' ')
  p2=$(taskset -c $c /tmp/probe 256); s2=$(taskset -c $c /tmp/spd)
  echo "$(date +%T) cpu $c probe $p1 $p2 spd $s1 $s2 score $sc"
done; done
