#!/bin/bash
# env WD DIR RING BK METHODS(comma list of Class::method for print)
WD=${WD:-.}; DIR=${DIR:-loop}; RING=${RING:-packed}; BK=${BK:-jvhost-busy}
out=/tmp/asm-$(date +%H%M%S); mkdir -p $out; echo $out
cc=""
for m in ${METHODS//,/ }; do cc="$cc -XX:CompileCommand=print,$m"; done
cd $WD
export PATH=/usr/lib/jvm/temurin-25-jdk-amd64/bin:$PATH
( JAVA_TOOL_OPTIONS="-XX:+UnlockDiagnosticVMOptions $cc $EXTRA" ./jvhost bench net --dirs $DIR --rings $RING --sizes 64 --mrg 1 --queues 1 --backends $BK --runs 1 --seconds 12 --out /tmp/abres > $out/bench.txt 2>&1 ) &
bp=$!
sleep 15
pid=$(pgrep -f 'jvhost-cli.*bench net' | head -1)
for t in /proc/$pid/task/*; do c=$(cat $t/comm); case "$c" in *poller*) tid=${t##*/};; esac; done
echo "pid $pid tid $tid" > $out/threads.txt
jcmd $pid Compiler.perfmap >/dev/null 2>&1
perf record -t $tid -o $out/perf.data -- sleep 4 2> $out/perf.err
jcmd $pid Compiler.perfmap >/dev/null 2>&1
cp /tmp/perf-$pid.map $out/ 2>/dev/null
wait $bp
perf report -i $out/perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 > $out/report.txt
perf script -i $out/perf.data -F ip 2>/dev/null | sort | uniq -c | sort -rn > $out/ips.txt
grep -E 'Mpps' $out/bench.txt | sed 's/\x1b\[[0-9;]*m//g' | head -2
cat $out/report.txt
