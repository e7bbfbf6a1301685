#!/usr/bin/env bash
# Coverage-guided fuzzing with Jazzer (not part of CI; `mvn verify` only replays the kept inputs).
#
#   scripts/fuzz-coverage.sh [--runs N] [--seconds S] [--target NAME]... [--no-fuzz] [--no-coverage]
#
# For each target, one at a time and under `nice -n 10`: fuzz for N inputs (default 1,000,000) or
# S seconds, starting from its kept inputs; minimize what it kept plus what it found (libFuzzer
# -merge=1) back into the target's inputs directory, which `mvn verify` replays (Jazzer's
# regression mode); then replay every kept input under JaCoCo and print line coverage per package.
# A crash stops the script with status 1 and leaves the input as crash-<sha1> in the inputs
# directory, where it becomes a regression test (fix the bug, keep the file).
#
# Targets (docs/reliability.md, "Coverage-guided fuzzing"):
#   codec   vhost-user message framing + payload decoding     vhost-user-core-tests
#   memory  memory table + SET_VRING_ADDR validation           vhost-user-core-tests
#   cursor  descriptor chain walk over guest memory            vhost-user-core-tests
#   blk     virtio-blk request parsing                         virtio-blk-backend
#
# Builds (Maven) take the build lock ($JVHOST_BUILD_LOCK, default /tmp/jvhost-build.lock); fuzzing
# does not. Logs and work directories: <module>/target/fuzz/<target>/.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
LOCK=${JVHOST_BUILD_LOCK:-/tmp/jvhost-build.lock}
JACOCO_VERSION=0.8.15
RUNS=1000000
SECONDS_LIMIT=0
FUZZ=true
COVERAGE=true
SELECTED=()

#        name    module                 class                                              method                                                                  instrumented
TARGETS=("codec  vhost-user-core-tests  io.jvhost.core.protocol.MessageCodecFuzzTest       shouldDecodeOrRefuseEveryMessageWhateverItsBytes                        io.jvhost.core.**"
         "session vhost-user-core-tests io.jvhost.core.runtime.SessionFuzzTest            shouldReplyRefuseOrDropEveryMessageWhateverItsBytes                     io.jvhost.core.**"
         "memory vhost-user-core-tests  io.jvhost.core.memory.MemoryTableFuzzTest          shouldMapOnlyValidTablesAndTranslateOnlyInsideThem                      io.jvhost.core.**"
         "cursor vhost-user-core-tests  io.jvhost.core.ring.DescriptorCursorFuzzTest       shouldGiveAChainInsideGuestMemoryOrAChainErrorWhateverTheDescriptors    io.jvhost.core.**"
         "blk    virtio-blk-backend     io.jvhost.blk.BlkRequestFuzzTest                   shouldCompleteEveryRequestWithAStatusInsideItsBuffersWhateverTheChain   io.jvhost.core.**:io.jvhost.blk.**")

# The classes each target drives (printed below their package in the coverage report).
UNDER_TEST="io.jvhost.core.protocol.Header io.jvhost.core.protocol.MemoryTable io.jvhost.core.protocol.RegionDescription
  io.jvhost.core.protocol.VringAddress io.jvhost.core.protocol.VringState io.jvhost.core.protocol.VringFd
  io.jvhost.core.protocol.LogBase io.jvhost.core.protocol.ConfigRequest io.jvhost.core.protocol.InflightRequest
  io.jvhost.core.protocol.Payload io.jvhost.core.protocol.Trace io.jvhost.core.runtime.Session
  io.jvhost.core.runtime.Vrings io.jvhost.core.runtime.SharedRegions io.jvhost.core.memory.MemoryMap
  io.jvhost.core.memory.GuestMemory io.jvhost.core.ring.DescriptorChain io.jvhost.core.ring.SplitRing
  io.jvhost.core.ring.ChainCursor io.jvhost.core.ring.VirtQueue io.jvhost.blk.BlkQueueHandler io.jvhost.blk.BlockRequest"

say() { printf 'fuzz-coverage: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_LIMIT=$2; shift 2 ;;
    --target) SELECTED+=("$2"); shift 2 ;;
    --no-fuzz) FUZZ=false; shift ;;
    --no-coverage) COVERAGE=false; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

# A JDK >= 25 (the project's release): JAVA_HOME if it is one, else the newest under /usr/lib/jvm.
jdk_major() { "$1/bin/java" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1; }
if [[ -z "${JAVA_HOME:-}" || ! -x "$JAVA_HOME/bin/javac" || $(jdk_major "$JAVA_HOME") -lt 25 ]]; then
  JAVA_HOME=""
  for candidate in /usr/lib/jvm/*; do
    if [[ -x "$candidate/bin/javac" ]] && (( $(jdk_major "$candidate") >= 25 )); then
      JAVA_HOME=$candidate
    fi
  done
  [[ -n "$JAVA_HOME" ]] || die "no JDK >= 25 found (set JAVA_HOME)"
fi
export JAVA_HOME PATH="$JAVA_HOME/bin:$PATH"

locked() { if command -v flock >/dev/null; then flock "$LOCK" "$@"; else "$@"; fi; }
mvn_modules() { locked mvn -B -q -pl vhost-user-core-tests,virtio-blk-backend -am "$@"; }

selected() {
  [[ ${#SELECTED[@]} -eq 0 ]] && return 0
  local s
  for s in "${SELECTED[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}

# Flags of every fuzzing JVM. Jazzer attaches its agent at run time (JDK 21+ warns unless allowed);
# the backend logs every refused message, which at tens of thousands of inputs a second is noise.
JVM=(-Xmx768m -XX:+EnableDynamicAgentLoading --enable-native-access=ALL-UNNAMED
     -Dorg.slf4j.simpleLogger.defaultLogLevel=off)

jazzer() { # module class method includes args...
  local module=$1 class=$2 method=$3 includes=$4
  shift 4
  (cd "$ROOT/$module" && nice -n 10 java "${JVM[@]}" \
      -cp "target/test-classes:target/classes:$(cat target/fuzz.classpath)" \
      com.code_intelligence.jazzer.Jazzer --target_class="$class" --target_method="$method" \
      --instrumentation_includes="$includes" "$@")
}

fuzz_target() { # name module class method includes
  local name=$1 module=$2 class=$3 method=$4 includes=$5
  local inputs="src/test/resources/${class%.*}" work="$ROOT/$module/target/fuzz/$name"
  inputs="${inputs//.//}/${class##*.}Inputs/$method"
  mkdir -p "$ROOT/$module/$inputs"
  rm -rf "$work" && mkdir -p "$work/corpus" "$work/kept" "$work/merged"
  local limits=(-runs="$RUNS" -max_total_time="$SECONDS_LIMIT")
  local limit="$RUNS inputs"
  [[ $SECONDS_LIMIT -gt 0 ]] && limit+=" or ${SECONDS_LIMIT}s"
  say "$name: fuzzing $class#$method ($limit), log ${work#"$ROOT"/}/fuzz.log"
  local started=$(date +%s) status=0
  # The JUnit integration adds the inputs directory as a seed directory and writes crashes into it.
  jazzer "$module" "$class" "$method" "$includes" "${limits[@]}" -print_final_stats=1 "$work/corpus" \
      >"$work/fuzz.log" 2>&1 || status=$?
  local elapsed=$(( $(date +%s) - started ))
  local runs; runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -n 1)
  local crashes; crashes=$(find "$ROOT/$module/$inputs" -name 'crash-*' -newer "$work/kept" | wc -l)
  say "$name: ${runs:-?} inputs in ${elapsed}s ($(( ${runs:-0} / (elapsed > 0 ? elapsed : 1) )) a second), exit $status, new crashes $crashes"
  printf '%s %s %s %s %s\n' "$name" "${runs:-0}" "$elapsed" "$crashes" "$status" >>"$ROOT/target/fuzz-summary.txt"
  if [[ $status -ne 0 || $crashes -gt 0 ]]; then
    grep -A40 '== Java Exception' "$work/fuzz.log" | head -n 60 >&2 || tail -n 40 "$work/fuzz.log" >&2
    say "$name: crash kept in $module/$inputs; fix the bug and keep the file as a regression input"
    exit 1
  fi
  # Minimize: the kept inputs (less crash files, which stay as they are) and the new corpus into one
  # set that reaches the same features, written back as the kept inputs.
  find "$ROOT/$module/$inputs" -maxdepth 1 -type f ! -name 'crash-*' -exec cp {} "$work/kept/" \;
  jazzer "$module" "$class" "$method" "$includes" -merge=1 "$work/merged" "$work/kept" "$work/corpus" \
      >"$work/merge.log" 2>&1 || { tail -n 30 "$work/merge.log" >&2; die "$name: merge failed"; }
  find "$ROOT/$module/$inputs" -maxdepth 1 -type f ! -name 'crash-*' -delete
  local f
  for f in "$work/merged"/*; do
    [[ -e "$f" && ! -e "$ROOT/$module/$inputs/crash-$(basename "$f")" ]] && cp "$f" "$ROOT/$module/$inputs/"
  done
  say "$name: $(find "$ROOT/$module/$inputs" -type f | wc -l) inputs kept in $module/$inputs"
}

coverage() {
  say "replaying the kept inputs under JaCoCo $JACOCO_VERSION (regression mode, no fuzzing)"
  local tests=() t name module class method includes
  for t in "${TARGETS[@]}"; do
    read -r name module class method includes <<<"$t"
    tests+=("${class##*.}")
  done
  rm -f "$ROOT"/*/target/jacoco.exec # prepare-agent appends: start from nothing
  # The resources copy keeps inputs a merge has since dropped: replay exactly the kept ones.
  find "$ROOT"/*/target/test-classes -type d -name '*FuzzTestInputs' -prune -exec rm -rf {} + 2>/dev/null || true
  (cd "$ROOT" && mvn_modules \
      -Djacoco.propertyName=jacocoArgLine -Dtest="$(IFS=,; echo "${tests[*]}")" -Dsurefire.failIfNoSpecifiedTests=false \
      "org.jacoco:jacoco-maven-plugin:$JACOCO_VERSION:prepare-agent" test \
      "org.jacoco:jacoco-maven-plugin:$JACOCO_VERSION:report" \
      "org.jacoco:jacoco-maven-plugin:$JACOCO_VERSION:report-aggregate")
  say "line coverage of the packages under test, from replaying every kept input:"
  # report-aggregate covers the modules a test module depends on, report the module's own classes.
  local module
  for module in vhost-user-core-tests virtio-blk-backend; do
    printf '%s (%s):\n' "$module" "$(for t in "${TARGETS[@]}"; do read -r name m _ <<<"$t"; [[ $m == "$module" ]] && printf '%s ' "$name"; done)"
    cat "$ROOT/$module/target/site/jacoco-aggregate/jacoco.csv" \
        $(ls "$ROOT/$module/target/site/jacoco/jacoco.csv" 2>/dev/null) |
      awk -F, -v classes="$UNDER_TEST" 'BEGIN { split(classes, k, " "); for (i in k) want[k[i]] = 1 }
               $2 ~ /^io\.jvhost\.(core|blk)/ { m[$2] += $8; c[$2] += $9
                 if (($2 "." $3) in want) { cm[$2 "." $3] += $8; cc[$2 "." $3] += $9 } }
               END { for (p in m) printf "  %-44s %5d / %5d lines  %5.1f%%\n", p, c[p], m[p] + c[p], 100 * c[p] / (m[p] + c[p])
                     for (p in cm) printf "    %-42s %5d / %5d lines  %5.1f%%\n", p, cc[p], cm[p] + cc[p], 100 * cc[p] / (cm[p] + cc[p]) }' |
      sort -b -k1,1
  done
}

cd "$ROOT"
mkdir -p target
if [[ $FUZZ == true ]]; then
  say "building the test classes and their class path"
  mvn_modules test-compile dependency:build-classpath -Dmdep.outputFile=target/fuzz.classpath -Dmdep.includeScope=test
  : >"$ROOT/target/fuzz-summary.txt"
  for t in "${TARGETS[@]}"; do
    read -r name module class method includes <<<"$t"
    selected "$name" && fuzz_target "$name" "$module" "$class" "$method" "$includes"
  done
  say "summary (target, inputs, seconds, crashes, exit):"
  cat "$ROOT/target/fuzz-summary.txt" >&2
fi
if [[ $COVERAGE == true ]]; then
  coverage
fi
