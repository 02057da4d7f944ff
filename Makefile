# distcc in Rust — build, test, demo, bench, install.
#   make            build the release binary (target/release/distcc)
#   make test       all tests; needs Debian's distcc 3.4 as the interop peer
#   make demo       the main job on an embedded default (see README)
#   make bench      side-by-side benchmarks against distcc 3.4 (tests/bench/)
#   make fuzz       coverage-guided fuzzing of every untrusted-input parser (FUZZ_SECONDS=60)
#   make install    PREFIX=/usr DESTDIR=… ; make uninstall undoes it

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
BIN := target/release/distcc

.PHONY: all build test check-peer demo bench fuzz install uninstall lint clean

all build:
	$(CARGO) build --release

# The interop tests drive Debian's distcc 3.4. Install it when we can (root + apt-get);
# otherwise stop and say the one command to run. Never skip them silently.
# gcc-11 is the second compiler version of the mixed-fleet tests (gcc-12 is Debian 12's gcc);
# chromium loads distccd's browser monitor in the observability tests; clang is the compiler
# whose plain-mode jobs keep macros with -frewrite-includes (and obey a .i's #include).
check-peer:
	@if [ ! -x /usr/bin/distccd ] || [ ! -x /usr/bin/distcc ] || [ ! -x /usr/bin/distcc-pump ] \
	    || ! command -v ccache >/dev/null || ! command -v python3 >/dev/null || ! command -v man >/dev/null || ! command -v groff >/dev/null \
	    || [ ! -x /usr/bin/gcc-11 ] || [ ! -x /usr/bin/chromium ] || ! command -v clang >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's distcc 3.4 (the interop peer)…"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq distcc distcc-pump ccache man-db python3 gcc-11 chromium clang >/dev/null || exit 1; \
	  else \
	    echo "The interop tests need Debian's distcc 3.4. Run:"; \
	    echo "    sudo apt-get install -y distcc distcc-pump ccache man-db python3 gcc-11 chromium clang"; \
	    exit 1; \
	  fi; \
	fi

test: check-peer
	$(CARGO) build --release
	$(CARGO) test --release -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Benchmarks never run in `make test`; BENCH_ARGS=--quick for a shorter run.
bench: check-peer build
	$(CARGO) bench --bench distcc_bench -- $(BENCH_ARGS)

# Coverage-guided fuzzing of every parser that reads untrusted bytes, on the stable toolchain:
# SanitizerCoverage's trace-pc-guard callbacks are ours (src/fuzz.rs). `--target` keeps the
# flags off build scripts and proc macros. FUZZ_SECONDS per target; findings go to
# target/fuzz-findings/.
FUZZ_SECONDS ?= 60
FUZZ_RUSTFLAGS := --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
	-Cllvm-args=-sanitizer-coverage-trace-pc-guard -Cllvm-args=-sanitizer-coverage-prune-blocks=0 \
	-Cdebug-assertions -Coverflow-checks
fuzz:
	RUSTFLAGS="$(FUZZ_RUSTFLAGS)" FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release \
	  --target $$(rustc -vV | sed -n 's/^host: //p') --target-dir target/fuzz --test fuzz

demo: build
	bash tests/demo/run.sh
include packaging/install.mk
