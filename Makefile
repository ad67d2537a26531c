# make run  : install what is missing, build, run the echo server on :8080
# make test : install what is missing, build, run every test
LUA      ?= lua5.4
LUAV     ?= 5.4
TREE     := $(CURDIR)/.rocks
CODEC    := csrc/ws_crypto.c csrc/ws_handshake.c csrc/ws_frame.c csrc/ws_reader.c csrc/ws_utf8.c
STRICT   := -std=c99 -Wall -Wextra -Werror -Icsrc
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1

export LUA_PATH  := $(TREE)/share/lua/$(LUAV)/?.lua;$(TREE)/share/lua/$(LUAV)/?/init.lua;;
export LUA_CPATH := $(TREE)/lib/lua/$(LUAV)/?.so;;

.PHONY: all deps build test run ctest ctest-asan ctest-valgrind fuzz bench clean
all: build

deps:
	@sh scripts/deps.sh

# The module is built by LuaRocks from the rockspec, as users build it,
# with our warnings turned into errors.
build: deps
	luarocks --lua-version=$(LUAV) --tree=$(TREE) make --deps-mode=none \
	  CFLAGS="-O2 -fPIC -std=c99 -Wall -Wextra -Werror" lua-ws-scm-1.rockspec >build.log 2>&1 \
	  || { cat build.log; exit 1; }

run: build
	$(LUA) examples/echo.lua

test: build
	@sh scripts/test.sh

# C unit tests with gcc and clang, under ASan/UBSan, and under valgrind.
build/c:
	mkdir -p build/c
build/c/%-gcc: csrc/test/%.c $(CODEC) | build/c
	gcc $(STRICT) -O2 $^ -lcrypto -o $@
build/c/%-clang: csrc/test/%.c $(CODEC) | build/c
	clang $(STRICT) -O2 $^ -lcrypto -o $@
build/c/%-asan: csrc/test/%.c $(CODEC) | build/c
	clang $(STRICT) $(SAN) $^ -lcrypto -o $@

CTESTS := test_codec test_handshake
ctest: $(foreach t,$(CTESTS),build/c/$(t)-gcc build/c/$(t)-clang)
	@for t in $^; do ./$$t || exit 1; done
ctest-asan: $(foreach t,$(CTESTS),build/c/$(t)-asan)
	@for t in $^; do ./$$t || exit 1; done
ctest-valgrind: $(foreach t,$(CTESTS),build/c/$(t)-gcc)
	@for t in $^; do valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 ./$$t || exit 1; done

bench: build
	@sh bench/run.sh

clean:
	rm -rf build .rocks build.log csrc/*.o
