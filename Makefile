# make run   : install what running needs, build if sources changed, run the
#              echo server on :8080 (ARGS="--port 8081 --compression")
# make check : build, luacheck and the fast specs (under a minute)
# make test  : install the test toolchain, build, run every test
# make docs  : the API reference into docs/ (ldoc, from the doc comments)
LUA      ?= lua5.4
# also LUA=lua5.3, lua5.1 or luajit: `make build|test LUA=luajit` builds into
# .rocks-luajit and runs the busted suite under it (scripts/test-lua.sh;
# LUAV: the ABI, 5.1 for LuaJIT)
LUANAME  := $(notdir $(LUA))
LUAV     ?= $(if $(filter luajit%,$(LUANAME)),5.1,$(patsubst lua%,%,$(LUANAME)))
TREE     := $(CURDIR)/.rocks$(if $(filter-out lua5.4,$(LUANAME)),-$(LUANAME))
BUILDLOG := build$(if $(filter-out lua5.4,$(LUANAME)),-$(LUANAME)).log
# LuaRocks' Debian config points 5.1 at PUC Lua: LuaJIT needs its own
# headers, and its own interpreter in the wrapper LuaRocks writes for the
# `ws` command (lua_interpreter is read only from a config file: one in the tree)
ISJIT    := $(filter luajit%,$(LUANAME))
ROCKSVARS := $(if $(ISJIT),LUA_INCDIR=$$(pkg-config --variable=includedir luajit 2>/dev/null || echo /usr/include/luajit-2.1) \
  LUA_BINDIR=$$(dirname "$$(command -v $(LUA))"))
ROCKSCFG := $(TREE)/luarocks-config.lua
CODEC    := csrc/ws_crypto.c csrc/ws_handshake.c csrc/ws_frame.c csrc/ws_reader.c csrc/ws_utf8.c csrc/ws_tls.c csrc/ws_proxy.c csrc/ws_fanout.c csrc/ws_io.c csrc/ws_resolve.c
SSLLIBS  := -lssl -lcrypto -pthread -ldl
STRICT   := -std=c99 -Wall -Wextra -Werror -Icsrc
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1

export LUA_PATH  := $(TREE)/share/lua/$(LUAV)/?.lua;$(TREE)/share/lua/$(LUAV)/?/init.lua;;
export LUA_CPATH := $(TREE)/lib/lua/$(LUAV)/?.so;;

.PHONY: all deps deps-run build test test-asan run check lint docs ctest ctest-asan ctest-valgrind fuzz bench clean
# the specs run again under ASan/UBSan, all but those tagged #browser
# (Chromium does not run with the ASan runtime preloaded) or #slow (they
# run once, on Lua 5.4, in scripts/test-lua.sh); a small
# quarantine keeps RSS-bound assertions meaningful
ASAN_SPECS ?= spec
all: build

deps:
	@sh scripts/deps.sh test
deps-run:
	@sh scripts/deps.sh run

# LuaRocks' script runs under whatever `lua` is; pin it to ours.
LUAROCKS = $(LUA) "$$(command -v luarocks)"

# The module is built by LuaRocks from the rockspec, as users build it,
# with our warnings turned into errors.
build: deps
	@$(MAKE) -s build-rock

# the rock, rebuilt only when a source or the rockspec changed
STAMP := $(TREE)/.built
SOURCES := $(wildcard csrc/*.c csrc/*.h lua/ws/*.lua bin/ws) lua-ws-scm-1.rockspec Makefile
.PHONY: build-rock
build-rock: $(STAMP)
$(STAMP): $(SOURCES)
	@$(if $(ISJIT),mkdir -p $(TREE) && echo 'lua_interpreter = "$(LUANAME)"' >$(ROCKSCFG))
	@$(if $(ISJIT),LUAROCKS_CONFIG=$(ROCKSCFG)) $(LUAROCKS) --lua-version=$(LUAV) --tree=$(TREE) make --deps-mode=none $(ROCKSVARS) \
	  CFLAGS="-O2 -fPIC -std=c99 -Wall -Wextra -Werror" lua-ws-scm-1.rockspec >$(BUILDLOG) 2>&1 \
	  || { cat $(BUILDLOG); exit 1; }
	@touch $@

# only what running needs (no test toolchain), then the echo server
ARGS ?=
run: deps-run
	@$(MAKE) -s build-rock
	$(LUA) examples/echo.lua $(ARGS)

lint:
	@luacheck -q --formatter=plain .

# the edit-test cycle: build, lint, the fast specs (.busted's "fast" task)
check: build lint
	@LUA=$(LUA) $(LUA) /usr/bin/busted -o plainTerminal --run=fast

docs: build
	@$(LUA) scripts/docs.lua

test: build
	@if [ "$(LUANAME)" = lua5.4 ]; then sh scripts/test.sh; else sh scripts/test-lua.sh $(LUA); fi

# C unit tests with gcc and clang, under ASan/UBSan, and under valgrind.
build/c:
	mkdir -p build/c
build/c/%-gcc: csrc/test/%.c $(CODEC) | build/c
	gcc $(STRICT) -O2 $^ $(SSLLIBS) -o $@
build/c/%-clang: csrc/test/%.c $(CODEC) | build/c
	clang $(STRICT) -O2 $^ $(SSLLIBS) -o $@
build/c/%-asan: csrc/test/%.c $(CODEC) | build/c
	clang $(STRICT) $(SAN) $^ $(SSLLIBS) -o $@

CTESTS := test_codec test_handshake test_tls test_proxy test_fanout test_io test_resolve
ctest: $(foreach t,$(CTESTS),build/c/$(t)-gcc build/c/$(t)-clang)
	@for t in $^; do ./$$t || exit 1; done
ctest-asan: $(foreach t,$(CTESTS),build/c/$(t)-asan)
	@for t in $^; do ./$$t || exit 1; done
ctest-valgrind: $(foreach t,$(CTESTS),build/c/$(t)-gcc)
	@for t in $^; do valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 ./$$t || exit 1; done

# The whole busted suite against ws.core built with ASan/UBSan: the
# sanitizer runtime is preloaded into the (uninstrumented) Lua interpreter
# and every server process the specs start.
ASAN_TREE := $(CURDIR)/build/asan-rocks
test-asan: deps
	$(LUAROCKS) --lua-version=$(LUAV) --tree=$(ASAN_TREE) make --deps-mode=none \
	  CFLAGS="-O1 -g -fPIC -std=c99 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  LIBFLAG="-shared -fsanitize=address,undefined" lua-ws-scm-1.rockspec >build/asan-build.log 2>&1 \
	  || { cat build/asan-build.log; exit 1; }
	LUA_PATH="$(ASAN_TREE)/share/lua/$(LUAV)/?.lua;$(ASAN_TREE)/share/lua/$(LUAV)/?/init.lua;;" \
	LUA_CPATH="$(ASAN_TREE)/lib/lua/$(LUAV)/?.so;;" \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=4 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(LUA) /usr/bin/busted -o plainTerminal --exclude-tags=browser,slow $(ASAN_SPECS)

bench: build
	@sh bench/run.sh

clean:
	rm -rf build .rocks build.log csrc/*.o ws
	rm -rf .rocks-* build-*.log

# libFuzzer targets (fuzz/) under ASan/UBSan; crashes are saved to
# fuzz/regressions/ and replayed by every run. See scripts/fuzz.sh.
FUZZ_SECONDS ?= 600
FUZZ_SHORT_SECONDS ?= 20
.PHONY: fuzz-short
fuzz:
	@FUZZ_MERGE=$${FUZZ_MERGE:-1} sh scripts/fuzz.sh $(FUZZ_SECONDS)
fuzz-short:
	@sh scripts/fuzz.sh $(FUZZ_SHORT_SECONDS)
