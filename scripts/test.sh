#!/usr/bin/env bash
# Builds and runs the whole test suite: the release build, the ASan+UBSan build, and a short
# libFuzzer run of each fuzz target. This is what CI runs (.ci/run) and what README.md shows.
#   scripts/test.sh            everything
#   SP_QUICK=1 scripts/test.sh release build only
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
total_pass=0 total_fail=0

run_ctest() { # dir label
  local log; log=$(mktemp)
  if (cd "$1" && ctest --output-on-failure -j "$JOBS") >"$log" 2>&1; then status=0; else status=1; fi
  cat "$log"
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$log" | tail -1 || true)
  local failed total
  failed=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  total=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
  if [ -z "$line" ]; then failed=1; total=1; fi
  total_pass=$((total_pass + total - failed)); total_fail=$((total_fail + failed))
  rm -f "$log"
  echo "== $2: $((total - failed)) of $total test programs passed"
}

echo "== release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build
run_ctest build release

if [ "${SP_QUICK:-0}" != 1 ]; then
  echo "== sanitizer build (AddressSanitizer + UndefinedBehaviorSanitizer)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSP_SANITIZE=ON >/dev/null
  ninja -C build-asan
  # RSS_SLACK_MB: the server load test's memory-growth bound; ASan's quarantine alone holds up to 256 MB
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 RSS_SLACK_MB=512 run_ctest build-asan sanitizers

  echo "== fuzzing (libFuzzer, clang), ${SP_FUZZ_SECONDS:-30} s per target"
  CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSP_FUZZ=ON -DSP_X86_KERNELS=ON >/dev/null
  ninja -C build-fuzz fuzz_gguf fuzz_tokenizer fuzz_request
  mkdir -p build-fuzz/corpus-gguf build-fuzz/corpus-tokenizer build-fuzz/corpus-request
  cp ../shared/fixtures/models/llama-q4_0.gguf ../shared/fixtures/models/qwen3-q8_0.gguf build-fuzz/corpus-gguf/ 2>/dev/null || true
  printf '\x04Hello <|eot_id|> wörld' >build-fuzz/corpus-tokenizer/seed1
  printf '\x01{"messages":[{"role":"user","content":"hi"}],"stream":true,"stop":["a"],"speculative_prefill":{"keep_rate":0.2}}' >build-fuzz/corpus-request/seed1
  for t in gguf tokenizer request; do
    target=fuzz_$t
    if build-fuzz/tests/$target -max_total_time="${SP_FUZZ_SECONDS:-30}" -max_len=65536 -rss_limit_mb=4096 \
         build-fuzz/corpus-$t >build-fuzz/$target.log 2>&1; then
      total_pass=$((total_pass + 1)); echo "== $target: no crash ($(grep -o 'stat::number_of_executed_units: [0-9]*' build-fuzz/$target.log || tail -1 build-fuzz/$target.log))"
    else
      total_fail=$((total_fail + 1)); echo "== $target: FAILED"; tail -40 build-fuzz/$target.log
    fi
  done
fi

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
